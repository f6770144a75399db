//! Radiance-distribution integration (NeRDF, Wu et al., ICCV 2023), forward and backward.
//!
//! Each ray carries `4 x 24` real Fourier coefficients `phi[ch][i]` (channels sigma, r, g, b;
//! layout `[n_rays, 4, 24]`) over the normalised depth `tau = (t - near) / (far - near)`, in the
//! order of the released code (`utils/gauss_lib.py::gauss_dft`):
//!
//! ```text
//! B_0 = 1,  B_{2m-1}(tau) = sin(2 pi m tau) (m = 1..12),  B_{2m}(tau) = cos(2 pi m tau) (m = 1..11)
//! raw_ch(tau) = sum_i phi[ch][i] B_i(tau)
//! sigma(tau) = act(raw_sigma(tau) + noise),  c(tau) = sigmoid(raw_rgb(tau))
//! ```
//!
//! The series has period 1, so `raw(0) = raw(1)`: the distribution at `near` equals the one at
//! `far` for any coefficients (a property of the paper's basis, kept as is).
//!
//! The series is evaluated at `S` sorted `tau` per ray (either one list shared by all rays, or
//! one per ray), at distances `t_j = near + tau_j (far - near)`, and composited with the
//! raysplat quadrature (no epsilon): `delta_j = t_{j+1} - t_j`, `delta_{S-1} = last_delta` (the
//! paper's `1e10`: the last sample absorbs what is left), `alpha_j = 1 - exp(-sigma_j delta_j)`,
//! `T_j = prod_{i<j} (1 - alpha_i)`, `w_j = T_j alpha_j`. Outputs per ray: colour `sum w c`,
//! opacity `sum w`, depth `sum w t`, and on request the raw Fourier density `raw_sigma(tau_j)`
//! (before noise and activation; what the distillation's density constraint compares).
//!
//! The basis comes from one branch-free polynomial `sin`/`cos` of `2 pi tau` per sample (none
//! for a shared `tau` list: a table is built once) and the angle-addition recurrence for the
//! higher harmonics. Nothing of size `[rays, samples, 24]` exists: each thread keeps one ray's
//! `24 x S` basis in a scratch buffer. The backward pass recomputes the forward per ray and
//! returns the gradient w.r.t. the coefficients only.

use rayon::prelude::*;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::check::expect_len;
use crate::error::{Error, Result};
use crate::isa::{avx2_variant, choose};
use crate::output::Output;
use crate::real::Real;

/// Basis functions per channel.
pub const N_BASIS: usize = 24;
/// Channels: sigma, r, g, b.
pub const N_CHANNELS: usize = 4;
/// Coefficients per ray.
pub const RAY_COEFFS: usize = N_BASIS * N_CHANNELS;

/// Rays handled by one parallel task.
const CHUNK: usize = 64;

/// The activation turning the Fourier density into a non-negative density.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigmaActivation {
    /// `max(x, 0)` (the paper's).
    Relu,
    /// `log(1 + exp(x))`.
    Softplus,
}

impl SigmaActivation {
    /// `(act(x), act'(x))`.
    #[inline(always)]
    fn eval<T: Real>(self, x: T) -> (T, T) {
        match self {
            SigmaActivation::Relu => {
                if x > T::zero() {
                    (x, T::one())
                } else {
                    (T::zero(), T::zero())
                }
            }
            SigmaActivation::Softplus => {
                let e = (-x.abs()).exp();
                let sp = x.max(T::zero()) + e.ln_1p();
                let sig = if x >= T::zero() {
                    T::one() / (T::one() + e)
                } else {
                    e / (T::one() + e)
                };
                (sp, sig)
            }
        }
    }
}

/// The inputs of one call.
#[derive(Debug, Clone, Copy)]
pub struct Distribution<'a, T> {
    /// `[n_rays * 4 * 24]` coefficients.
    pub coeffs: &'a [T],
    /// Sorted normalised depths in `[0, 1]`: `[n_samples]` shared by every ray, or
    /// `[n_rays * n_samples]`.
    pub taus: &'a [T],
    /// `[n_rays]` near distances.
    pub near: &'a [T],
    /// `[n_rays]` far distances (`>= near`).
    pub far: &'a [T],
    /// Optional `[n_rays * n_samples]` noise added to the raw density before the activation.
    pub noise: Option<&'a [T]>,
    /// Samples per ray.
    pub n_samples: usize,
    /// The density activation.
    pub activation: SigmaActivation,
    /// The length of the last interval (the paper's `1e10`).
    pub last_delta: T,
}

/// Per-ray outputs of [`render_distribution`].
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered<T> {
    /// `[n_rays * 3]`.
    pub colors: Vec<T>,
    /// `[n_rays]`.
    pub opacities: Vec<T>,
    /// `[n_rays]`, `sum_j w_j t_j`.
    pub depths: Vec<T>,
    /// `[n_rays * n_samples]` raw Fourier densities, when requested.
    pub sigmas: Option<Vec<T>>,
    /// `[n_rays * n_samples]` sample distances `near + tau (far - near)`, with `sigmas`.
    pub t: Option<Vec<T>>,
}

/// Gradients of the outputs (`None` = zero).
#[derive(Debug, Clone, Copy)]
pub struct OutputGrads<'a, T> {
    /// `[n_rays * 3]`.
    pub colors: Option<&'a [T]>,
    /// `[n_rays]`.
    pub opacities: Option<&'a [T]>,
    /// `[n_rays]`.
    pub depths: Option<&'a [T]>,
    /// `[n_rays * n_samples]`.
    pub sigmas: Option<&'a [T]>,
}

/// `(sin(2 pi x), cos(2 pi x))` by range reduction and Taylor polynomials to degree 17 / 18
/// (branch-free; below 1e-13 absolute error, so the same code serves `f32` and `f64`).
#[inline(always)]
pub fn sincos_turns<T: Real>(x: T) -> (T, T) {
    let half = T::lit(0.5);
    let quarter = T::lit(0.25);
    let r = x - (x + half).floor(); // [-0.5, 0.5)
    let (r, sign) = if r > quarter {
        (half - r, -T::one())
    } else if r < -quarter {
        (-half - r, -T::one())
    } else {
        (r, T::one())
    };
    let a = r * T::lit(std::f64::consts::TAU);
    let a2 = a * a;
    let mut s = T::lit(1.0 / 355_687_428_096_000.0);
    s = s * a2 - T::lit(1.0 / 1_307_674_368_000.0);
    s = s * a2 + T::lit(1.0 / 6_227_020_800.0);
    s = s * a2 - T::lit(1.0 / 39_916_800.0);
    s = s * a2 + T::lit(1.0 / 362_880.0);
    s = s * a2 - T::lit(1.0 / 5_040.0);
    s = s * a2 + T::lit(1.0 / 120.0);
    s = s * a2 - T::lit(1.0 / 6.0);
    s = s * a2 + T::one();
    let mut c = T::lit(-1.0 / 6_402_373_705_728_000.0);
    c = c * a2 + T::lit(1.0 / 20_922_789_888_000.0);
    c = c * a2 - T::lit(1.0 / 87_178_291_200.0);
    c = c * a2 + T::lit(1.0 / 479_001_600.0);
    c = c * a2 - T::lit(1.0 / 3_628_800.0);
    c = c * a2 + T::lit(1.0 / 40_320.0);
    c = c * a2 - T::lit(1.0 / 720.0);
    c = c * a2 + T::lit(1.0 / 24.0);
    c = c * a2 - T::lit(0.5);
    c = c * a2 + T::one();
    (s * a, sign * c)
}

/// The 24 basis values at `tau` (reference evaluation with `sin` / `cos`; tests and tables).
pub fn basis<T: Real>(tau: T) -> [T; N_BASIS] {
    let mut b = [T::zero(); N_BASIS];
    b[0] = T::one();
    for m in 1..=12 {
        let a = T::lit(std::f64::consts::TAU * m as f64) * tau;
        b[2 * m - 1] = a.sin();
        if m <= 11 {
            b[2 * m] = a.cos();
        }
    }
    b
}

/// Fills `b` (`24 x S`, basis-major) with the basis at `taus` (`S` values) by recurrence.
#[inline(always)]
fn fill_basis<T: Real>(taus: &[T], b: &mut [T]) {
    let s = taus.len();
    let b = &mut b[..N_BASIS * s];
    b[..s].fill(T::one());
    {
        let (sin1, rest) = b[s..].split_at_mut(s);
        let cos1 = &mut rest[..s];
        for j in 0..s {
            let (sn, cs) = sincos_turns(taus[j]);
            sin1[j] = sn;
            cos1[j] = cs;
        }
    }
    // (sin m, cos m) from (sin (m-1), cos (m-1)) and (sin 1, cos 1).
    for m in 2..=12 {
        let (done, todo) = b.split_at_mut((2 * m - 1) * s);
        let (sin1, cos1) = (&done[s..2 * s], &done[2 * s..3 * s]);
        let (sinp, cosp) = (
            &done[(2 * m - 3) * s..(2 * m - 2) * s],
            &done[(2 * m - 2) * s..(2 * m - 1) * s],
        );
        let (sinm, rest) = todo.split_at_mut(s);
        for j in 0..s {
            sinm[j] = sinp[j] * cos1[j] + cosp[j] * sin1[j];
        }
        if m <= 11 {
            let cosm = &mut rest[..s];
            for j in 0..s {
                cosm[j] = cosp[j] * cos1[j] - sinp[j] * sin1[j];
            }
        }
    }
}

/// `raw[ch * S + j] = sum_i phi[ch][i] B_i(tau_j)` for one ray: blocks of eight samples with
/// the four channels' sums in registers (the sums run over `i` in order, as the text reads).
#[inline(always)]
fn eval_series<T: Real>(phi: &[T], b: &[T], raw: &mut [T], s: usize) {
    const L: usize = 8;
    let phi = &phi[..RAY_COEFFS];
    let b = &b[..N_BASIS * s];
    let raw = &mut raw[..N_CHANNELS * s];
    let mut j0 = 0;
    while j0 + L <= s {
        let mut acc = [[T::zero(); L]; N_CHANNELS];
        for ch in 0..N_CHANNELS {
            acc[ch] = [phi[ch * N_BASIS]; L];
        }
        for i in 1..N_BASIS {
            let bi: &[T] = &b[i * s + j0..i * s + j0 + L];
            for ch in 0..N_CHANNELS {
                let p = phi[ch * N_BASIS + i];
                for l in 0..L {
                    acc[ch][l] += p * bi[l];
                }
            }
        }
        for ch in 0..N_CHANNELS {
            raw[ch * s + j0..ch * s + j0 + L].copy_from_slice(&acc[ch]);
        }
        j0 += L;
    }
    for j in j0..s {
        for ch in 0..N_CHANNELS {
            let mut acc = phi[ch * N_BASIS];
            for i in 1..N_BASIS {
                acc += phi[ch * N_BASIS + i] * b[i * s + j];
            }
            raw[ch * s + j] = acc;
        }
    }
}

/// `sum_j a_j g[ch * s + j]` for the four channels, with eight interleaved partial sums per
/// channel (a fixed order, so it vectorises and gives the same result in every build).
#[inline(always)]
fn dot4<T: Real>(a: &[T], g: &[T], s: usize) -> [T; N_CHANNELS] {
    const L: usize = 8;
    let a = &a[..s];
    let g = &g[..N_CHANNELS * s];
    let mut acc = [[T::zero(); L]; N_CHANNELS];
    let mut j0 = 0;
    while j0 + L <= s {
        let x = &a[j0..j0 + L];
        for ch in 0..N_CHANNELS {
            let y = &g[ch * s + j0..ch * s + j0 + L];
            for l in 0..L {
                acc[ch][l] += x[l] * y[l];
            }
        }
        j0 += L;
    }
    for j in j0..s {
        for ch in 0..N_CHANNELS {
            acc[ch][j - j0] += a[j] * g[ch * s + j];
        }
    }
    let mut out = [T::zero(); N_CHANNELS];
    for ch in 0..N_CHANNELS {
        let c = &acc[ch];
        out[ch] = ((c[0] + c[4]) + (c[1] + c[5])) + ((c[2] + c[6]) + (c[3] + c[7]));
    }
    out
}

#[inline(always)]
fn sigmoid<T: Real>(x: T) -> T {
    T::one() / (T::one() + (-x).exp_fast())
}

/// Per-thread buffers for one ray.
struct Scratch<T> {
    basis: Vec<T>,
    raw: Vec<T>,
    t: Vec<T>,
    w: Vec<T>,
    trans: Vec<T>,
    dsig: Vec<T>,
    e: Vec<T>,
}

impl<T: Real> Scratch<T> {
    fn new(s: usize) -> Self {
        Scratch {
            basis: vec![T::zero(); N_BASIS * s],
            raw: vec![T::zero(); N_CHANNELS * s],
            t: vec![T::zero(); s],
            w: vec![T::zero(); s],
            trans: vec![T::zero(); s],
            dsig: vec![T::zero(); s],
            e: vec![T::zero(); s],
        }
    }
}

const BAD_COEFFS: u8 = 1;
const BAD_TAUS: u8 = 2;
const BAD_NOISE: u8 = 4;

/// Checks the sizes and the per-ray bounds; returns the number of rays.
fn check<T: Real>(d: &Distribution<'_, T>) -> Result<usize> {
    if d.n_samples == 0 {
        return Err(Error::value("n_samples", "must be at least 1"));
    }
    if d.coeffs.len() % RAY_COEFFS != 0 {
        return Err(Error::shape(
            "coeffs",
            format!(
                "expected a multiple of {RAY_COEFFS} elements ([n_rays, 4, 24]), got {}",
                d.coeffs.len()
            ),
        ));
    }
    let n = d.coeffs.len() / RAY_COEFFS;
    expect_len("near", d.near.len(), n)?;
    expect_len("far", d.far.len(), n)?;
    if d.taus.len() != d.n_samples && d.taus.len() != n * d.n_samples {
        return Err(Error::shape(
            "taus",
            format!(
                "expected {} (shared) or {} (per ray) elements, got {}",
                d.n_samples,
                n * d.n_samples,
                d.taus.len()
            ),
        ));
    }
    if let Some(z) = d.noise {
        expect_len("noise", z.len(), n * d.n_samples)?;
    }
    if !(d.last_delta >= T::zero() && d.last_delta.is_finite()) {
        return Err(Error::value(
            "last_delta",
            "must be finite and non-negative",
        ));
    }
    for (a, b) in d.near.iter().zip(d.far) {
        if !(a.is_finite() && b.is_finite() && *b >= *a) {
            return Err(Error::value(
                "far",
                "near and far must be finite with far >= near on every ray",
            ));
        }
    }
    Ok(n)
}

#[inline(always)]
fn taus_ok<T: Real>(taus: &[T]) -> bool {
    let mut ok = true;
    let mut prev = T::zero();
    for &x in taus {
        ok &= x >= prev && x <= T::one();
        prev = x;
    }
    ok
}

fn flag_error(flags: u8) -> Result<()> {
    if flags & BAD_COEFFS != 0 {
        return Err(Error::value("coeffs", "contains NaN or infinite values"));
    }
    if flags & BAD_TAUS != 0 {
        return Err(Error::value(
            "taus",
            "every ray's normalised depths must be finite, sorted and within [0, 1]",
        ));
    }
    if flags & BAD_NOISE != 0 {
        return Err(Error::value("noise", "contains NaN or infinite values"));
    }
    Ok(())
}

/// Shared basis table (`None` when every ray has its own `taus`), after checking the `taus`.
fn shared_table<T: Real>(d: &Distribution<'_, T>, n: usize) -> Result<Option<Vec<T>>> {
    if d.taus.len() == n * d.n_samples && n != 1 {
        return Ok(None);
    }
    if !taus_ok(d.taus) {
        flag_error(BAD_TAUS)?;
    }
    let mut b = vec![T::zero(); N_BASIS * d.n_samples];
    fill_basis(d.taus, &mut b);
    Ok(Some(b))
}

/// Evaluates ray `r` into the scratch (`raw`, `t`); returns error flags.
#[inline(always)]
fn prepare_ray<T: Real>(
    d: &Distribution<'_, T>,
    table: Option<&[T]>,
    r: usize,
    sc: &mut Scratch<T>,
) -> u8 {
    let s = d.n_samples;
    let phi = &d.coeffs[r * RAY_COEFFS..(r + 1) * RAY_COEFFS];
    let mut flags = 0;
    if !phi.iter().fold(true, |ok, v| ok & v.is_finite()) {
        flags |= BAD_COEFFS;
    }
    let taus = match table {
        Some(_) => &d.taus[..s],
        None => &d.taus[r * s..(r + 1) * s],
    };
    let basis: &[T] = match table {
        Some(tb) => tb,
        None => {
            if !taus_ok(taus) {
                flags |= BAD_TAUS;
            }
            fill_basis(taus, &mut sc.basis);
            &sc.basis
        }
    };
    eval_series(phi, basis, &mut sc.raw, s);
    let (near, span) = (d.near[r], d.far[r] - d.near[r]);
    for (tj, &x) in sc.t[..s].iter_mut().zip(taus) {
        *tj = near + x * span;
    }
    if let Some(z) = d.noise {
        let z = &z[r * s..(r + 1) * s];
        if !z.iter().fold(true, |ok, v| ok & v.is_finite()) {
            flags |= BAD_NOISE;
        }
    }
    flags
}

/// Composites one prepared ray: `(rgb, opacity, depth)`; fills `w`, `trans`, `e`
/// (`exp(-sigma delta)`) and `dsig` (`act' * delta`) and turns `raw`'s colour rows into
/// `sigmoid` values. Element-wise passes first (they vectorise), then the sequential scan.
#[inline(always)]
fn composite<T: Real>(d: &Distribution<'_, T>, r: usize, sc: &mut Scratch<T>) -> ([T; 3], T, T) {
    let s = d.n_samples;
    let (sig_row, rgb_rows) = sc.raw.split_at_mut(s);
    let rgb_rows = &mut rgb_rows[..3 * s];
    for v in rgb_rows.iter_mut() {
        *v = sigmoid(*v);
    }
    let (e, dsig, t) = (&mut sc.e[..s], &mut sc.dsig[..s], &sc.t[..s]);
    // delta_j into dsig (last: last_delta), then the activation.
    for j in 0..s - 1 {
        dsig[j] = t[j + 1] - t[j];
    }
    dsig[s - 1] = d.last_delta;
    let noise = d.noise.map(|z| &z[r * s..(r + 1) * s]);
    let x = &mut sc.w[..s]; // the noisy raw density, for now
    match noise {
        Some(z) => {
            for j in 0..s {
                x[j] = sig_row[j] + z[j];
            }
        }
        None => x.copy_from_slice(&sig_row[..s]),
    }
    match d.activation {
        SigmaActivation::Relu => {
            for j in 0..s {
                let pos = x[j] > T::zero();
                let sigma = if pos { x[j] } else { T::zero() };
                e[j] = (-(sigma * dsig[j])).exp_fast();
                dsig[j] = if pos { dsig[j] } else { T::zero() };
            }
        }
        SigmaActivation::Softplus => {
            for j in 0..s {
                let (sigma, ds) = SigmaActivation::Softplus.eval(x[j]);
                e[j] = (-(sigma * dsig[j])).exp_fast();
                dsig[j] *= ds;
            }
        }
    }
    let (w, tr) = (&mut sc.w[..s], &mut sc.trans[..s]);
    let mut trans = T::one();
    let (mut c0, mut c1, mut c2) = (T::zero(), T::zero(), T::zero());
    let (mut opacity, mut depth) = (T::zero(), T::zero());
    let (r0, rest) = rgb_rows.split_at(s);
    let (r1, r2) = rest.split_at(s);
    for j in 0..s {
        let wj = trans * (T::one() - e[j]);
        w[j] = wj;
        tr[j] = trans;
        c0 += wj * r0[j];
        c1 += wj * r1[j];
        c2 += wj * r2[j];
        opacity += wj;
        depth += wj * t[j];
        trans -= wj;
    }
    ([c0, c1, c2], opacity, depth)
}

/// Renders every ray (see the module documentation).
pub fn render_distribution<T: Real>(
    d: &Distribution<'_, T>,
    want_sigmas: bool,
) -> Result<Rendered<T>> {
    let n = check(d)?;
    let s = d.n_samples;
    let table = shared_table(d, n)?;
    let (mut col, mut opa, mut dep) = (Output::new(n * 3), Output::new(n), Output::new(n));
    let mut sig = Output::new(if want_sigmas { n * s } else { 0 });
    let mut tt = Output::new(if want_sigmas { n * s } else { 0 });
    let (pc, po, pd, ps, pt) = (
        col.pieces(),
        opa.pieces(),
        dep.pieces(),
        sig.pieces(),
        tt.pieces(),
    );
    let flags = AtomicU8::new(0);
    let kernel: ForwardChunk<T> = choose!(forward_chunk::<T>, forward_chunk_avx2::<T>);
    crate::parallel::install(|| {
        (0..n.div_ceil(CHUNK)).into_par_iter().for_each_init(
            || Scratch::new(s),
            |sc, c| {
                let (r0, r1) = (c * CHUNK, ((c + 1) * CHUNK).min(n));
                // SAFETY: chunks are disjoint.
                let (oc, oo, od) =
                    unsafe { (pc.claim(r0 * 3..r1 * 3), po.claim(r0..r1), pd.claim(r0..r1)) };
                let (os, ot) = if want_sigmas {
                    // SAFETY: chunks are disjoint.
                    unsafe {
                        (
                            Some(ps.claim(r0 * s..r1 * s)),
                            Some(pt.claim(r0 * s..r1 * s)),
                        )
                    }
                } else {
                    (None, None)
                };
                let out = ForwardOut {
                    colors: oc,
                    opacities: oo,
                    depths: od,
                    sigmas: os,
                    t: ot,
                };
                // SAFETY: the AVX2 variant only runs on CPUs that have it.
                let f = unsafe { kernel(d, table.as_deref(), r0, r1, sc, out) };
                if f != 0 {
                    flags.fetch_or(f, Ordering::Relaxed);
                }
            },
        );
    });
    flag_error(flags.load(Ordering::Relaxed))?;
    // SAFETY: the chunks cover every ray.
    unsafe {
        Ok(Rendered {
            colors: col.finish(),
            opacities: opa.finish(),
            depths: dep.finish(),
            sigmas: if want_sigmas {
                Some(sig.finish())
            } else {
                None
            },
            t: if want_sigmas { Some(tt.finish()) } else { None },
        })
    }
}

/// One chunk's output slices.
struct ForwardOut<'a, T> {
    colors: &'a mut [T],
    opacities: &'a mut [T],
    depths: &'a mut [T],
    sigmas: Option<&'a mut [T]>,
    t: Option<&'a mut [T]>,
}

type ForwardChunk<T> = for<'a, 'b> unsafe fn(
    &Distribution<'a, T>,
    Option<&[T]>,
    usize,
    usize,
    &mut Scratch<T>,
    ForwardOut<'b, T>,
) -> u8;

avx2_variant!(forward_chunk_avx2<T: Real> => forward_chunk,
    (d: &Distribution<'_, T>, table: Option<&[T]>, r0: usize, r1: usize, sc: &mut Scratch<T>,
     out: ForwardOut<'_, T>) -> u8);

#[inline(always)]
fn forward_chunk<T: Real>(
    d: &Distribution<'_, T>,
    table: Option<&[T]>,
    r0: usize,
    r1: usize,
    sc: &mut Scratch<T>,
    mut out: ForwardOut<'_, T>,
) -> u8 {
    let s = d.n_samples;
    let mut flags = 0;
    for r in r0..r1 {
        let k = r - r0;
        flags |= prepare_ray(d, table, r, sc);
        if let Some(os) = out.sigmas.as_deref_mut() {
            os[k * s..(k + 1) * s].copy_from_slice(&sc.raw[..s]);
        }
        if let Some(ot) = out.t.as_deref_mut() {
            ot[k * s..(k + 1) * s].copy_from_slice(&sc.t[..s]);
        }
        let (rgb, o, dp) = composite(d, r, sc);
        out.colors[k * 3..k * 3 + 3].copy_from_slice(&rgb);
        out.opacities[k] = o;
        out.depths[k] = dp;
    }
    flags
}

/// Gradient `[n_rays * 4 * 24]` of [`render_distribution`]'s outputs w.r.t. the coefficients.
pub fn render_distribution_backward<T: Real>(
    d: &Distribution<'_, T>,
    g: &OutputGrads<'_, T>,
) -> Result<Vec<T>> {
    let n = check(d)?;
    let s = d.n_samples;
    if let Some(v) = g.colors {
        expect_len("v_colors", v.len(), n * 3)?;
    }
    if let Some(v) = g.opacities {
        expect_len("v_opacities", v.len(), n)?;
    }
    if let Some(v) = g.depths {
        expect_len("v_depths", v.len(), n)?;
    }
    if let Some(v) = g.sigmas {
        expect_len("v_sigmas", v.len(), n * s)?;
    }
    let table = shared_table(d, n)?;
    let mut out = Output::new(n * RAY_COEFFS);
    let po = out.pieces();
    let flags = AtomicU8::new(0);
    let kernel: BackwardChunk<T> = choose!(backward_chunk::<T>, backward_chunk_avx2::<T>);
    crate::parallel::install(|| {
        (0..n.div_ceil(CHUNK)).into_par_iter().for_each_init(
            || Scratch::new(s),
            |sc, c| {
                let (r0, r1) = (c * CHUNK, ((c + 1) * CHUNK).min(n));
                // SAFETY: chunks are disjoint.
                let o = unsafe { po.claim(r0 * RAY_COEFFS..r1 * RAY_COEFFS) };
                // SAFETY: the AVX2 variant only runs on CPUs that have it.
                let f = unsafe { kernel(d, g, table.as_deref(), r0, r1, sc, o) };
                if f != 0 {
                    flags.fetch_or(f, Ordering::Relaxed);
                }
            },
        );
    });
    flag_error(flags.load(Ordering::Relaxed))?;
    // SAFETY: the chunks cover every ray.
    Ok(unsafe { out.finish() })
}

type BackwardChunk<T> = for<'a, 'b, 'c> unsafe fn(
    &Distribution<'a, T>,
    &OutputGrads<'b, T>,
    Option<&[T]>,
    usize,
    usize,
    &mut Scratch<T>,
    &'c mut [T],
) -> u8;

avx2_variant!(backward_chunk_avx2<T: Real> => backward_chunk,
    (d: &Distribution<'_, T>, g: &OutputGrads<'_, T>, table: Option<&[T]>, r0: usize, r1: usize,
     sc: &mut Scratch<T>, out: &mut [T]) -> u8);

#[inline(always)]
fn backward_chunk<T: Real>(
    d: &Distribution<'_, T>,
    g: &OutputGrads<'_, T>,
    table: Option<&[T]>,
    r0: usize,
    r1: usize,
    sc: &mut Scratch<T>,
    out: &mut [T],
) -> u8 {
    let s = d.n_samples;
    let mut flags = 0;
    for r in r0..r1 {
        flags |= prepare_ray(d, table, r, sc);
        composite(d, r, sc);
        let gc = g
            .colors
            .map_or([T::zero(); 3], |v| [v[r * 3], v[r * 3 + 1], v[r * 3 + 2]]);
        let go = g.opacities.map_or(T::zero(), |v| v[r]);
        let gd = g.depths.map_or(T::zero(), |v| v[r]);
        // Per-sample value gradient a_j = gc . c_j + go + gd t_j; then
        // dL/ds_j = a_j T_{j+1} - sum_{i>j} w_i a_i, with s_j = sigma_j delta_j.
        let (sig_row, rgb_rows) = sc.raw.split_at_mut(s);
        let rgb_rows = &mut rgb_rows[..3 * s];
        let a = &mut sc.e[..s]; // e is not needed any more
        let t = &sc.t[..s];
        {
            let (r0, rest) = rgb_rows.split_at(s);
            let (r1, r2) = rest.split_at(s);
            for j in 0..s {
                a[j] = gc[0] * r0[j] + gc[1] * r1[j] + gc[2] * r2[j] + go + gd * t[j];
            }
        }
        let (w, tr, dsig) = (&sc.w[..s], &sc.trans[..s], &sc.dsig[..s]);
        let mut suffix = T::zero();
        for j in (0..s).rev() {
            let ds = a[j] * (tr[j] - w[j]) - suffix;
            suffix += w[j] * a[j];
            // (dsig == 0 also avoids 0 * inf for an opaque last sample)
            sig_row[j] = if dsig[j] == T::zero() {
                T::zero()
            } else {
                ds * dsig[j]
            };
        }
        if let Some(v) = g.sigmas {
            let v = &v[r * s..(r + 1) * s];
            for j in 0..s {
                sig_row[j] += v[j];
            }
        }
        for ch in 0..3 {
            let row = &mut rgb_rows[ch * s..(ch + 1) * s];
            for j in 0..s {
                let c = row[j];
                row[j] = w[j] * gc[ch] * c * (T::one() - c);
            }
        }
        let basis: &[T] = match table {
            Some(tb) => tb,
            None => &sc.basis,
        };
        let o = &mut out[(r - r0) * RAY_COEFFS..(r - r0 + 1) * RAY_COEFFS];
        let graw = &sc.raw[..N_CHANNELS * s];
        for i in 0..N_BASIS {
            let d4 = dot4(&basis[i * s..(i + 1) * s], graw, s);
            for ch in 0..N_CHANNELS {
                o[ch * N_BASIS + i] = d4[ch];
            }
        }
    }
    flags
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `n` deterministic pseudo-random values in `[0, 1)` (a 64-bit LCG seeded by `seed`); also
    /// used by the bake kernel's tests.
    pub(crate) fn lcg(n: usize, seed: u64) -> Vec<f64> {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 11) as f64) / (1u64 << 53) as f64
            })
            .collect()
    }

    /// Direct evaluation with `sin` / `cos` and the textbook quadrature.
    fn brute(d: &Distribution<'_, f64>) -> Rendered<f64> {
        let n = d.coeffs.len() / RAY_COEFFS;
        let s = d.n_samples;
        let mut out = Rendered {
            colors: vec![0.0; 3 * n],
            opacities: vec![0.0; n],
            depths: vec![0.0; n],
            sigmas: Some(vec![0.0; n * s]),
            t: None,
        };
        for r in 0..n {
            let taus: Vec<f64> = if d.taus.len() == s {
                d.taus.to_vec()
            } else {
                d.taus[r * s..(r + 1) * s].to_vec()
            };
            let t: Vec<f64> = taus
                .iter()
                .map(|x| d.near[r] + x * (d.far[r] - d.near[r]))
                .collect();
            let mut acc_sd = 0.0f64;
            for j in 0..s {
                let b = basis(taus[j]);
                let raw: Vec<f64> = (0..4)
                    .map(|ch| (0..24).map(|i| d.coeffs[r * 96 + ch * 24 + i] * b[i]).sum())
                    .collect();
                out.sigmas.as_mut().unwrap()[r * s + j] = raw[0];
                let x = raw[0] + d.noise.map_or(0.0, |z| z[r * s + j]);
                let sigma = d.activation.eval(x).0;
                let delta = if j + 1 < s {
                    t[j + 1] - t[j]
                } else {
                    d.last_delta
                };
                let trans = (-acc_sd).exp();
                let w = trans * (1.0 - (-sigma * delta).exp());
                acc_sd += sigma * delta;
                for c in 0..3 {
                    out.colors[r * 3 + c] += w / (1.0 + (-raw[c + 1]).exp());
                }
                out.opacities[r] += w;
                out.depths[r] += w * t[j];
            }
        }
        out
    }

    fn inputs(n: usize, s: usize, per_ray: bool) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
        let coeffs: Vec<f64> = lcg(n * 96, 1).iter().map(|u| (u - 0.4) * 1.5).collect();
        let taus: Vec<f64> = if per_ray {
            let u = lcg(n * s, 2);
            (0..n * s)
                .map(|i| ((i % s) as f64 + u[i]) / s as f64)
                .collect()
        } else {
            (0..s).map(|j| j as f64 / (s - 1) as f64).collect()
        };
        let near: Vec<f64> = lcg(n, 3).iter().map(|u| 1.0 + u).collect();
        let far: Vec<f64> = near.iter().map(|a| a + 3.0).collect();
        (coeffs, taus, near, far)
    }

    #[test]
    fn sincos_is_accurate() {
        for i in 0..=20_000 {
            let x = -3.0 + 6.0 * i as f64 / 20_000.0;
            let (s, c) = sincos_turns(x);
            let a = std::f64::consts::TAU * x;
            assert!(
                (s - a.sin()).abs() < 1e-12 && (c - a.cos()).abs() < 1e-12,
                "{x}"
            );
            let (s32, c32) = sincos_turns(x as f32);
            assert!((s32 as f64 - a.sin()).abs() < 2e-6 && (c32 as f64 - a.cos()).abs() < 2e-6);
        }
    }

    #[test]
    fn recurrence_matches_direct_basis() {
        let taus: Vec<f64> = lcg(37, 5);
        let mut b = vec![0.0; 24 * 37];
        fill_basis(&taus, &mut b);
        for (j, &x) in taus.iter().enumerate() {
            let e = basis(x);
            for i in 0..24 {
                assert!((b[i * 37 + j] - e[i]).abs() < 1e-12);
            }
        }
        let b0 = basis(0.0f64);
        for (i, v) in b0.iter().enumerate() {
            assert_eq!(*v, if i % 2 == 0 { 1.0 } else { 0.0 });
        }
    }

    #[test]
    fn forward_matches_brute_force() {
        for (per_ray, act, noise) in [
            (false, SigmaActivation::Relu, false),
            (true, SigmaActivation::Relu, true),
            (true, SigmaActivation::Softplus, false),
        ] {
            let (n, s) = (150, 13);
            let (coeffs, taus, near, far) = inputs(n, s, per_ray);
            let z = lcg(n * s, 9);
            let d = Distribution {
                coeffs: &coeffs,
                taus: &taus,
                near: &near,
                far: &far,
                noise: if noise { Some(&z) } else { None },
                n_samples: s,
                activation: act,
                last_delta: 1e10,
            };
            let got = render_distribution(&d, true).unwrap();
            let want = brute(&d);
            let close = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-9);
            assert!(close(&got.colors, &want.colors));
            assert!(close(&got.opacities, &want.opacities));
            assert!(close(&got.depths, &want.depths));
            assert!(close(
                got.sigmas.as_ref().unwrap(),
                want.sigmas.as_ref().unwrap()
            ));
        }
    }

    #[test]
    fn backward_matches_finite_differences() {
        for (per_ray, act) in [
            (false, SigmaActivation::Softplus),
            (true, SigmaActivation::Relu),
        ] {
            let (n, s) = (3, 9);
            let (mut coeffs, taus, near, far) = inputs(n, s, per_ray);
            let gw = lcg(n * 3 + n + n + n * s, 11);
            let (gc, rest) = gw.split_at(n * 3);
            let (go, rest) = rest.split_at(n);
            let (gd, gs) = rest.split_at(n);
            let loss = |c: &[f64]| {
                let d = Distribution {
                    coeffs: c,
                    taus: &taus,
                    near: &near,
                    far: &far,
                    noise: None,
                    n_samples: s,
                    activation: act,
                    last_delta: 2.0,
                };
                let o = render_distribution(&d, true).unwrap();
                let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
                dot(&o.colors, gc)
                    + dot(&o.opacities, go)
                    + dot(&o.depths, gd)
                    + dot(o.sigmas.as_ref().unwrap(), gs)
            };
            let d = Distribution {
                coeffs: &coeffs,
                taus: &taus,
                near: &near,
                far: &far,
                noise: None,
                n_samples: s,
                activation: act,
                last_delta: 2.0,
            };
            let grads = OutputGrads {
                colors: Some(gc),
                opacities: Some(go),
                depths: Some(gd),
                sigmas: Some(gs),
            };
            let g = render_distribution_backward(&d, &grads).unwrap();
            for i in 0..coeffs.len() {
                let h = 1e-6;
                let c0 = coeffs[i];
                coeffs[i] = c0 + h;
                let lp = loss(&coeffs);
                coeffs[i] = c0 - h;
                let lm = loss(&coeffs);
                coeffs[i] = c0;
                let fd = (lp - lm) / (2.0 * h);
                assert!(
                    (fd - g[i]).abs() < 1e-5 * (1.0 + fd.abs()),
                    "{i}: {fd} vs {}",
                    g[i]
                );
            }
        }
    }

    #[test]
    fn constant_density_is_opaque_and_periodic() {
        let (n, s) = (4, 32);
        let mut coeffs = vec![0.0f64; n * 96];
        for r in 0..n {
            coeffs[r * 96] = 0.7;
        }
        let (_, taus, near, far) = inputs(n, s, false);
        let d = Distribution {
            coeffs: &coeffs,
            taus: &taus,
            near: &near,
            far: &far,
            noise: None,
            n_samples: s,
            activation: SigmaActivation::Relu,
            last_delta: 1e10,
        };
        let o = render_distribution(&d, true).unwrap();
        assert!(o.opacities.iter().all(|&x| (x - 1.0).abs() < 1e-12));
        let (coeffs, ..) = inputs(n, s, false);
        let d = Distribution {
            coeffs: &coeffs,
            ..d
        };
        let sg = render_distribution(&d, true).unwrap().sigmas.unwrap();
        for r in 0..n {
            assert!((sg[r * s] - sg[r * s + s - 1]).abs() < 1e-9);
        }
    }

    #[test]
    fn bad_inputs_name_the_argument() {
        let (n, s) = (2, 4);
        let (coeffs, taus, near, far) = inputs(n, s, false);
        let base = Distribution {
            coeffs: &coeffs,
            taus: &taus,
            near: &near,
            far: &far,
            noise: None,
            n_samples: s,
            activation: SigmaActivation::Relu,
            last_delta: 1e10,
        };
        let err =
            |d: Distribution<'_, f64>| render_distribution(&d, false).unwrap_err().to_string();
        assert!(err(Distribution {
            coeffs: &coeffs[..95],
            ..base
        })
        .starts_with("coeffs"));
        assert!(err(Distribution {
            taus: &taus[..3],
            ..base
        })
        .starts_with("taus"));
        assert!(err(Distribution {
            near: &near[..1],
            ..base
        })
        .starts_with("near"));
        assert!(err(Distribution {
            far: &near[..],
            near: &far,
            ..base
        })
        .starts_with("far"));
        assert!(err(Distribution {
            n_samples: 0,
            ..base
        })
        .starts_with("n_samples"));
        let rev: Vec<f64> = taus.iter().rev().copied().collect();
        assert!(err(Distribution { taus: &rev, ..base }).starts_with("taus"));
        let mut bad = coeffs.clone();
        bad[5] = f64::NAN;
        let d = Distribution {
            coeffs: &bad,
            ..base
        };
        assert!(err(d).starts_with("coeffs"));
        let empty = Distribution {
            coeffs: &[],
            near: &[],
            far: &[],
            ..base
        };
        let o = render_distribution(&empty, true).unwrap();
        assert!(o.colors.is_empty() && o.sigmas.unwrap().is_empty());
    }
}
