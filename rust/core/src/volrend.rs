//! Volume-rendering quadrature on packed samples, forward and backward.
//!
//! For the samples of one ray, with `s_i = sigma_i * (t_end_i - t_start_i)`:
//! `alpha_i = 1 - exp(-s_i)`, `T_i = exp(-sum_{j<i} s_j)` and `w_i = T_i * alpha_i`,
//! so that `sum_i w_i = 1 - T_final` exactly.

use rayon::prelude::*;

use std::sync::atomic::{AtomicBool, Ordering};

use crate::check::{expect_finite, expect_len};
use crate::error::{Error, Result};
use crate::isa::{avx2_variant, choose, per_ray_variants, pick_variant};
use crate::output::Output;
use crate::real::Real;
use crate::segments::{Segments, SharedMut};

/// Per-sample outputs of the weight kernels.
#[derive(Debug, Clone, PartialEq)]
pub struct Weights<T> {
    /// Contribution of each sample, `T_i * alpha_i`.
    pub weights: Vec<T>,
    /// Transmittance before each sample.
    pub trans: Vec<T>,
    /// Opacity of each sample.
    pub alphas: Vec<T>,
}

fn check_opt<T>(name: &'static str, v: Option<&[T]>, n: usize) -> Result<()> {
    match v {
        Some(v) => expect_len(name, v.len(), n),
        None => Ok(()),
    }
}

#[inline]
fn at<T: Real>(v: Option<&[T]>, i: usize) -> T {
    v.map_or(T::zero(), |v| v[i])
}

/// Weights, transmittance and alphas from optical thickness `sigma_dt = sigma * dt`.
pub fn weights_from_density<T: Real>(sigma_dt: &[T], segs: &Segments) -> Result<Weights<T>> {
    expect_len("sigmas", sigma_dt.len(), segs.n_samples())?;
    weights_with(segs, |rg, s| s.copy_from_slice(&sigma_dt[rg]))
}

/// [`weights_from_density`] of intervals: the thickness `sigma * (t_end - t_start)` is formed
/// inside the kernel (see [`weights_from_intervals_backward`] for all three gradients).
pub fn weights_from_intervals<T: Real>(
    t_starts: &[T],
    t_ends: &[T],
    sigmas: &[T],
    segs: &Segments,
) -> Result<Weights<T>> {
    let n = segs.n_samples();
    expect_len("t_starts", t_starts.len(), n)?;
    expect_len("t_ends", t_ends.len(), n)?;
    expect_len("sigmas", sigmas.len(), n)?;
    weights_with(segs, |rg, s| {
        let (t0, t1, sg) = (&t_starts[rg.clone()], &t_ends[rg.clone()], &sigmas[rg]);
        for k in 0..s.len() {
            s[k] = sg[k] * (t1[k] - t0[k]);
        }
    })
}

/// Runs [`weights_ray`] on every ray, `thickness(range, out)` writing the ray's `sigma * dt`.
fn weights_with<T: Real>(
    segs: &Segments,
    thickness: impl Fn(std::ops::Range<usize>, &mut [T]) + Sync + Send,
) -> Result<Weights<T>> {
    let n = segs.n_samples();
    let (mut w, mut t, mut a) = (Output::new(n), Output::new(n), Output::new(n));
    let (pw, pt, pa) = (w.pieces(), t.pieces(), a.pieces());
    let kernel: WeightsRay<T> = choose!(weights_ray::<T>, weights_ray_avx2::<T>);
    let bad = AtomicBool::new(false);
    segs.par_for_each(|_, rg| {
        // SAFETY: segments are disjoint.
        let (w, t, a) = unsafe {
            (
                pw.claim(rg.clone()),
                pt.claim(rg.clone()),
                pa.claim(rg.clone()),
            )
        };
        thickness(rg, a);
        // SAFETY: the AVX2 variant only runs on CPUs that have it.
        if !unsafe { kernel(w, t, a) } {
            bad.store(true, Ordering::Relaxed);
        }
    });
    if bad.load(Ordering::Relaxed) {
        return Err(Error::value(
            "sigmas",
            "sigmas * (t_ends - t_starts) contains NaN or infinite values",
        ));
    }
    // SAFETY: the segments cover every sample, and each ray claimed its own.
    unsafe {
        Ok(Weights {
            weights: w.finish(),
            trans: t.finish(),
            alphas: a.finish(),
        })
    }
}

/// A compiled variant of [`weights_ray`].
type WeightsRay<T> = unsafe fn(&mut [T], &mut [T], &mut [T]) -> bool;

avx2_variant!(weights_ray_avx2<T: Real> => weights_ray,
    (w: &mut [T], t: &mut [T], a: &mut [T]) -> bool);

/// One ray of [`weights_from_density`]: `a` holds the thicknesses on entry and the alphas on
/// return; `false` if a thickness is not finite.
#[inline(always)]
fn weights_ray<T: Real>(w: &mut [T], t: &mut [T], a: &mut [T]) -> bool {
    let m = a.len();
    let (w, t) = (&mut w[..m], &mut t[..m]);
    // Pass 1 (vectorised): exp(-s) and the finiteness check. Pass 2: T_{k+1} = T_k exp(-s_k).
    let mut finite = true;
    for ak in a.iter_mut() {
        finite &= ak.is_finite();
        *ak = (-*ak).exp_fast();
    }
    let mut trans = T::one();
    for k in 0..m {
        let e = a[k];
        let alpha = T::one() - e;
        t[k] = trans;
        a[k] = alpha;
        w[k] = trans * alpha;
        trans *= e;
    }
    finite
}

/// Gradient w.r.t. `sigma_dt` of [`weights_from_density`], given the saved `trans` and `alphas`
/// and the gradients of its three outputs (`None` = zero).
pub fn weights_from_density_backward<T: Real>(
    trans: &[T],
    alphas: &[T],
    v_weights: Option<&[T]>,
    v_trans: Option<&[T]>,
    v_alphas: Option<&[T]>,
    segs: &Segments,
) -> Result<Vec<T>> {
    let n = segs.n_samples();
    expect_len("trans", trans.len(), n)?;
    expect_len("alphas", alphas.len(), n)?;
    let g = OutputGrads::checked(v_weights, v_trans, v_alphas, n)?;
    let mut out = Output::new(n);
    let dst = out.pieces();
    segs.par_for_each(|_, rg| {
        // SAFETY: segments are disjoint.
        let o = unsafe { dst.claim(rg.clone()) };
        thickness_grad_ray(trans, alphas, g, rg, o);
    });
    // SAFETY: the segments cover every sample, and each ray claimed its own.
    Ok(unsafe { out.finish() })
}

/// Gradients of the three outputs of the weight kernels (`None` = zero).
#[derive(Clone, Copy)]
struct OutputGrads<'a, T> {
    weights: Option<&'a [T]>,
    trans: Option<&'a [T]>,
    alphas: Option<&'a [T]>,
}

impl<'a, T> OutputGrads<'a, T> {
    /// The gradients, each checked to hold `n` values if given.
    fn checked(
        weights: Option<&'a [T]>,
        trans: Option<&'a [T]>,
        alphas: Option<&'a [T]>,
        n: usize,
    ) -> Result<Self> {
        check_opt("v_weights", weights, n)?;
        check_opt("v_trans", trans, n)?;
        check_opt("v_alphas", alphas, n)?;
        Ok(OutputGrads {
            weights,
            trans,
            alphas,
        })
    }
}

/// `dL/ds` of the samples in `rg` (one ray) into `o`:
/// `dL/ds_k = exp(-s_k) (galpha_k + gw_k T_k) - sum_{i>k} (gT_i T_i + gw_i w_i)`.
#[inline]
fn thickness_grad_ray<T: Real>(
    trans: &[T],
    alphas: &[T],
    g: OutputGrads<'_, T>,
    rg: std::ops::Range<usize>,
    o: &mut [T],
) {
    let mut suffix = T::zero();
    for (k, i) in rg.enumerate().rev() {
        let gw = at(g.weights, i);
        let one_minus_alpha = T::one() - alphas[i];
        o[k] = one_minus_alpha * (at(g.alphas, i) + gw * trans[i]) - suffix;
        suffix += at(g.trans, i) * trans[i] + gw * trans[i] * alphas[i];
    }
}

/// Gradients of [`weights_from_intervals`] w.r.t. `(t_starts, t_ends, sigmas)`, given its saved
/// `trans` and `alphas`; the interval gradients are only computed (else empty) when `need_t`.
#[allow(clippy::too_many_arguments)]
pub fn weights_from_intervals_backward<T: Real>(
    t_starts: &[T],
    t_ends: &[T],
    sigmas: &[T],
    trans: &[T],
    alphas: &[T],
    v_weights: Option<&[T]>,
    v_trans: Option<&[T]>,
    v_alphas: Option<&[T]>,
    need_t: bool,
    segs: &Segments,
) -> Result<(Vec<T>, Vec<T>, Vec<T>)> {
    let n = segs.n_samples();
    for (name, len) in [
        ("t_starts", t_starts.len()),
        ("t_ends", t_ends.len()),
        ("sigmas", sigmas.len()),
        ("trans", trans.len()),
        ("alphas", alphas.len()),
    ] {
        expect_len(name, len, n)?;
    }
    let g = OutputGrads::checked(v_weights, v_trans, v_alphas, n)?;
    let nt = if need_t { n } else { 0 };
    let (mut g0, mut g1, mut gs) = (Output::new(nt), Output::new(nt), Output::new(n));
    let (p0, p1, ps) = (g0.pieces(), g1.pieces(), gs.pieces());
    segs.par_for_each(|_, rg| {
        // SAFETY: segments are disjoint.
        let o = unsafe { ps.claim(rg.clone()) };
        thickness_grad_ray(trans, alphas, g, rg.clone(), o);
        // Chain rule through s = sigma (t1 - t0).
        let (t0, t1, sg) = (
            &t_starts[rg.clone()],
            &t_ends[rg.clone()],
            &sigmas[rg.clone()],
        );
        if need_t {
            // SAFETY: as above; these buffers have `n` elements when `need_t`.
            let (a, b) = unsafe { (p0.claim(rg.clone()), p1.claim(rg)) };
            for k in 0..o.len() {
                b[k] = o[k] * sg[k];
                a[k] = -b[k];
            }
        }
        for k in 0..o.len() {
            o[k] *= t1[k] - t0[k];
        }
    });
    // SAFETY: the segments cover every sample, and each ray claimed its own.
    unsafe { Ok((g0.finish(), g1.finish(), gs.finish())) }
}

/// Weights and transmittance from per-sample opacities: `T_i = prod_{j<i} (1 - alpha_j)`.
pub fn weights_from_alpha<T: Real>(alphas: &[T], segs: &Segments) -> Result<(Vec<T>, Vec<T>)> {
    let n = alphas.len();
    expect_len("alphas", n, segs.n_samples())?;
    expect_finite("alphas", alphas)?;
    let mut w = crate::output::zeros(n);
    let mut t = crate::output::zeros(n);
    let (pw, pt) = (SharedMut::new(&mut w), SharedMut::new(&mut t));
    segs.par_for_each(|_, rg| {
        // SAFETY: segments are disjoint.
        let (w, t) = unsafe { (pw.slice(rg.clone()), pt.slice(rg.clone())) };
        let mut trans = T::one();
        for (k, &a) in alphas[rg].iter().enumerate() {
            t[k] = trans;
            w[k] = trans * a;
            trans *= T::one() - a;
        }
    });
    Ok((w, t))
}

/// Gradient w.r.t. `alphas` of [`weights_from_alpha`] (division-free, exact at `alpha = 1`).
pub fn weights_from_alpha_backward<T: Real>(
    alphas: &[T],
    trans: &[T],
    v_weights: Option<&[T]>,
    v_trans: Option<&[T]>,
    segs: &Segments,
) -> Result<Vec<T>> {
    let n = segs.n_samples();
    expect_len("alphas", alphas.len(), n)?;
    expect_len("trans", trans.len(), n)?;
    check_opt("v_weights", v_weights, n)?;
    check_opt("v_trans", v_trans, n)?;
    let mut out = crate::output::zeros(n);
    let dst = SharedMut::new(&mut out);
    segs.par_for_each(|_, rg| {
        // SAFETY: segments are disjoint.
        let o = unsafe { dst.slice(rg.clone()) };
        // R_k = sum_{i>k} G_i prod_{k<j<i} (1 - α_j), G_i = gT_i + gw_i α_i;  dL/dα_k = T_k (gw_k - R_k)
        let mut r = T::zero();
        for (k, i) in rg.clone().enumerate().rev() {
            o[k] = trans[i] * (at(v_weights, i) - r);
            r = at(v_trans, i) + at(v_weights, i) * alphas[i] + (T::one() - alphas[i]) * r;
        }
    });
    Ok(out)
}

/// How samples map to rays in [`accumulate`].
#[derive(Debug, Clone, Copy)]
pub enum RayMap<'a> {
    /// Contiguous per-ray segments (sorted packed or dense samples): parallel over rays.
    Segments(&'a Segments),
    /// Arbitrary (possibly unsorted) ray index per sample: serial scatter.
    Indices {
        /// Ray of each sample.
        ray_indices: &'a [i64],
        /// Number of rays.
        n_rays: usize,
    },
}

impl RayMap<'_> {
    fn n_rays(&self) -> usize {
        match self {
            RayMap::Segments(s) => s.n_rays(),
            RayMap::Indices { n_rays, .. } => *n_rays,
        }
    }

    fn check(&self, n_samples: usize) -> Result<()> {
        match self {
            RayMap::Segments(s) => expect_len("weights", n_samples, s.n_samples()),
            RayMap::Indices {
                ray_indices,
                n_rays,
            } => {
                expect_len("ray_indices", ray_indices.len(), n_samples)?;
                match ray_indices
                    .iter()
                    .find(|&&r| r < 0 || r as u64 >= *n_rays as u64)
                {
                    Some(r) => Err(Error::value(
                        "ray_indices",
                        format!("index {r} is outside 0..{n_rays} (n_rays)"),
                    )),
                    None => Ok(()),
                }
            }
        }
    }
}

#[inline]
fn add_weighted<T: Real>(o: &mut [T], w: T, values: Option<&[T]>, i: usize, c: usize) {
    match values {
        Some(v) => {
            for (oc, vc) in o.iter_mut().zip(&v[i * c..(i + 1) * c]) {
                *oc += w * *vc;
            }
        }
        None => o[0] += w,
    }
}

/// Sums `weights[i] * values[i, :]` into row `ray(i)` of a `[n_rays, channels]` output
/// (`values = None` sums the weights: `channels` is then 1).
pub fn accumulate<T: Real>(
    weights: &[T],
    values: Option<&[T]>,
    channels: usize,
    map: RayMap<'_>,
) -> Result<Vec<T>> {
    let n = weights.len();
    map.check(n)?;
    let c = if values.is_some() { channels } else { 1 };
    if let Some(v) = values {
        expect_len("values", v.len(), n * c)?;
        expect_finite("values", v)?;
    }
    expect_finite("weights", weights)?;
    let mut out = crate::output::zeros(map.n_rays() * c);
    match map {
        RayMap::Segments(segs) => {
            let dst = SharedMut::new(&mut out);
            segs.par_for_each(|r, rg| {
                // SAFETY: each ray writes only its own row.
                let o = unsafe { dst.slice(r * c..(r + 1) * c) };
                for i in rg {
                    add_weighted(o, weights[i], values, i, c);
                }
            });
        }
        RayMap::Indices { ray_indices, .. } => {
            for (i, &r) in ray_indices.iter().enumerate() {
                let r = r as usize;
                add_weighted(&mut out[r * c..(r + 1) * c], weights[i], values, i, c);
            }
        }
    }
    Ok(out)
}

/// Gradients of [`accumulate`]: `(v_weights, v_values)`; `v_values` is empty when
/// `values` is `None`.
pub fn accumulate_backward<T: Real>(
    weights: &[T],
    values: Option<&[T]>,
    channels: usize,
    map: RayMap<'_>,
    v_out: &[T],
) -> Result<(Vec<T>, Vec<T>)> {
    let n = weights.len();
    map.check(n)?;
    let c = if values.is_some() { channels } else { 1 };
    expect_len("v_out", v_out.len(), map.n_rays() * c)?;
    if let Some(v) = values {
        expect_len("values", v.len(), n * c)?;
    }
    let mut gw = crate::output::zeros(n);
    let mut gv = crate::output::zeros(if values.is_some() { n * c } else { 0 });
    let (pw, pv) = (SharedMut::new(&mut gw), SharedMut::new(&mut gv));
    let sample = |i: usize, r: usize| {
        let go = &v_out[r * c..(r + 1) * c];
        // SAFETY: every sample index is visited exactly once.
        let gwi = unsafe { pw.slice(i..i + 1) };
        match values {
            Some(v) => {
                let gvi = unsafe { pv.slice(i * c..(i + 1) * c) };
                let vi = &v[i * c..(i + 1) * c];
                let mut acc = T::zero();
                for k in 0..c {
                    acc += go[k] * vi[k];
                    gvi[k] = weights[i] * go[k];
                }
                gwi[0] = acc;
            }
            None => gwi[0] = go[0],
        }
    };
    match map {
        RayMap::Segments(segs) => segs.par_for_each(|r, rg| rg.for_each(|i| sample(i, r))),
        RayMap::Indices { ray_indices, .. } => crate::parallel::install(|| {
            (0..n)
                .into_par_iter()
                .with_min_len(1024)
                .for_each(|i| sample(i, ray_indices[i] as usize))
        }),
    }
    Ok((gw, gv))
}

/// Outputs of the fused [`render`] kernel.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered<T> {
    /// `[n_rays, channels]` accumulated values (colours).
    pub color: Vec<T>,
    /// `[n_rays]` accumulated weights.
    pub opacity: Vec<T>,
    /// `[n_rays]` accumulated `weights * (t_start + t_end) / 2`.
    pub depth: Vec<T>,
    /// `[n_samples]` compositing weights.
    pub weights: Vec<T>,
}

/// Per-sample inputs of [`render`]: interval bounds, densities and values `[N, channels]`.
#[derive(Debug, Clone, Copy)]
pub struct Samples<'a, T> {
    /// Interval starts.
    pub t_starts: &'a [T],
    /// Interval ends.
    pub t_ends: &'a [T],
    /// Densities.
    pub sigmas: &'a [T],
    /// Values (colours), `channels` per sample.
    pub values: &'a [T],
    /// Values per sample.
    pub channels: usize,
}

impl<'a, T: Real> Samples<'a, T> {
    /// The samples in `rg` (one ray).
    #[inline]
    fn ray(&self, rg: std::ops::Range<usize>) -> Samples<'a, T> {
        let c = self.channels;
        Samples {
            t_starts: &self.t_starts[rg.clone()],
            t_ends: &self.t_ends[rg.clone()],
            sigmas: &self.sigmas[rg.clone()],
            values: &self.values[rg.start * c..rg.end * c],
            channels: c,
        }
    }

    /// The error naming the first input that holds a NaN or infinity.
    fn first_non_finite(&self) -> Error {
        for (name, data) in [
            ("t_starts", self.t_starts),
            ("t_ends", self.t_ends),
            ("sigmas", self.sigmas),
            ("rgbs", self.values),
        ] {
            if let Err(e) = expect_finite(name, data) {
                return e;
            }
        }
        Error::value("sigmas", "contains NaN or infinite values")
    }

    fn check(&self, segs: &Segments) -> Result<()> {
        let n = segs.n_samples();
        expect_len("t_starts", self.t_starts.len(), n)?;
        expect_len("t_ends", self.t_ends.len(), n)?;
        expect_len("sigmas", self.sigmas.len(), n)?;
        expect_len("rgbs", self.values.len(), n * self.channels)
    }
}

/// Fused volume rendering of `[t_start, t_end]` intervals with densities `sigmas`: weights
/// as in [`weights_from_density`] with `sigma_dt = sigma * (t_end - t_start)`, and per ray
/// `color = sum w_i values_i`, `opacity = sum w_i`, `depth = sum w_i (t_start_i + t_end_i) / 2`,
/// in one pass.
pub fn render<T: Real>(x: Samples<'_, T>, segs: &Segments) -> Result<Rendered<T>> {
    x.check(segs)?;
    let (r, c, n) = (segs.n_rays(), x.channels, segs.n_samples());
    let (mut color, mut opacity, mut depth) = (
        crate::output::zeros(r * c),
        crate::output::zeros(r),
        crate::output::zeros(r),
    );
    let mut weights = Output::new(n);
    let (pc, po, pd, pw) = (
        SharedMut::new(&mut color),
        SharedMut::new(&mut opacity),
        SharedMut::new(&mut depth),
        weights.pieces(),
    );
    let bad = AtomicBool::new(false);
    let kernel: RenderRay<T> = pick_variant!(render_ray_base, render_ray_avx2, T, c);
    segs.par_for_each(|ray, rg| {
        // SAFETY: each ray writes its own row and its own sample range.
        let (col, w) = unsafe { (pc.slice(ray * c..(ray + 1) * c), pw.claim(rg.clone())) };
        // SAFETY: `pick_variant` only picks AVX2 code on CPUs that have it.
        let (o, d, ok) = unsafe { kernel(x.ray(rg.clone()), col, w, c) };
        if !ok {
            bad.store(true, Ordering::Relaxed);
        }
        unsafe {
            po.slice(ray..ray + 1)[0] = o;
            pd.slice(ray..ray + 1)[0] = d;
        }
    });
    if bad.load(Ordering::Relaxed) {
        return Err(x.first_non_finite());
    }
    Ok(Rendered {
        color,
        opacity,
        depth,
        // SAFETY: the segments cover every sample, and each ray claimed its own.
        weights: unsafe { weights.finish() },
    })
}

/// A compiled variant of [`render_ray`].
type RenderRay<T> = unsafe fn(Samples<'_, T>, &mut [T], &mut [T], usize) -> (T, T, bool);

per_ray_variants!(render_ray_base, render_ray_avx2, render_ray, <T>,
    (x: Samples<'_, T>, col: &mut [T], w: &mut [T]), c, (T, T, bool));

/// One ray of [`render`]: fills `w` and `col`, returns `(opacity, depth, all inputs finite)`.
/// Inlined into variants with a constant `c`, so the colour sums stay in registers.
#[inline(always)]
fn render_ray<T: Real>(x: Samples<'_, T>, col: &mut [T], w: &mut [T], c: usize) -> (T, T, bool) {
    let m = w.len();
    let (t0, t1, sg, v) = (
        &x.t_starts[..m],
        &x.t_ends[..m],
        &x.sigmas[..m],
        &x.values[..m * c],
    );
    // Pass 1 (vectorised): e_k = exp(-sigma_k dt_k), and the finiteness check of every input.
    let mut finite = true;
    for k in 0..m {
        let (a, b, s) = (t0[k], t1[k], sg[k]);
        finite &= a.is_finite() & b.is_finite() & s.is_finite();
        w[k] = (-(s * (b - a))).exp_fast();
    }
    for &vk in v {
        finite &= vk.is_finite();
    }
    // Pass 2: transmittance and the weighted sums. Colour sums live in a local array
    // (registers for small constant `c`): stores to `col` would chain through memory.
    let half = T::lit(0.5);
    const LOCAL: usize = 4;
    let mut acc = [T::zero(); LOCAL];
    let (mut trans, mut opacity, mut depth) = (T::one(), T::zero(), T::zero());
    col.fill(T::zero());
    for k in 0..m {
        let e = w[k];
        let wk = trans * (T::one() - e);
        w[k] = wk;
        trans *= e;
        opacity += wk;
        depth += wk * half * (t0[k] + t1[k]);
        let vk = &v[k * c..k * c + c];
        if c <= LOCAL {
            for ch in 0..c {
                acc[ch] += wk * vk[ch];
            }
        } else {
            for ch in 0..c {
                col[ch] += wk * vk[ch];
            }
        }
    }
    if c <= LOCAL {
        col.copy_from_slice(&acc[..c]);
    }
    (opacity, depth, finite)
}

/// Gradients of [`render`]'s outputs.
#[derive(Debug, Clone, Copy)]
pub struct RenderGrads<'a, T> {
    /// `[n_rays, channels]`.
    pub color: &'a [T],
    /// `[n_rays]`.
    pub opacity: &'a [T],
    /// `[n_rays]`.
    pub depth: &'a [T],
    /// `[n_samples]`, optional.
    pub weights: Option<&'a [T]>,
}

/// Gradients of [`render`]'s inputs: `(t_starts, t_ends, sigmas, values)`.
pub type RenderInputGrads<T> = (Vec<T>, Vec<T>, Vec<T>, Vec<T>);

/// Input gradients of [`render`]: `(t_starts, t_ends, sigmas, values)`; the interval-bound
/// gradients are only computed (else returned empty) when `need_t`. Transmittance is recomputed,
/// so only the inputs and the forward weights are needed.
pub fn render_backward<T: Real>(
    x: Samples<'_, T>,
    weights: &[T],
    g: RenderGrads<'_, T>,
    need_t: bool,
    segs: &Segments,
) -> Result<RenderInputGrads<T>> {
    x.check(segs)?;
    let (r, c, n) = (segs.n_rays(), x.channels, segs.n_samples());
    expect_len("weights", weights.len(), n)?;
    expect_len("v_colors", g.color.len(), r * c)?;
    expect_len("v_opacities", g.opacity.len(), r)?;
    expect_len("v_depths", g.depth.len(), r)?;
    check_opt("v_weights", g.weights, n)?;
    let nt = if need_t { n } else { 0 };
    let (mut g_ts, mut g_te) = (Output::new(nt), Output::new(nt));
    let (mut g_sg, mut g_val) = (Output::new(n), Output::new(n * c));
    let (p0, p1, ps, pv) = (g_ts.pieces(), g_te.pieces(), g_sg.pieces(), g_val.pieces());
    let kernel: RenderRayBackward<T> =
        pick_variant!(render_ray_backward_base, render_ray_backward_avx2, T, c);
    segs.par_for_each_init(Vec::new, |scratch, ray, rg| {
        // SAFETY: each ray writes only its own sample range (the `t` buffers have `n` elements
        // when `need_t`).
        let (gs, gv) = unsafe { (ps.claim(rg.clone()), pv.claim(rg.start * c..rg.end * c)) };
        let gt = need_t.then(|| unsafe { (p0.claim(rg.clone()), p1.claim(rg.clone())) });
        let gr = RayGrads {
            color: &g.color[ray * c..(ray + 1) * c],
            opacity: g.opacity[ray],
            depth: g.depth[ray],
            weights: g.weights.map(|gw| &gw[rg.clone()]),
        };
        let (xr, w) = (x.ray(rg.clone()), &weights[rg.clone()]);
        // SAFETY: `pick_variant` only picks AVX2 code on CPUs that have it.
        unsafe { kernel(xr, w, gr, gs, gv, gt, scratch, c) };
    });
    // SAFETY: the segments cover every sample and each ray claimed its own (the `t` buffers
    // are empty unless `need_t`).
    unsafe { Ok((g_ts.finish(), g_te.finish(), g_sg.finish(), g_val.finish())) }
}

/// One ray's output gradients in [`render_backward`].
#[derive(Clone, Copy)]
struct RayGrads<'a, T> {
    color: &'a [T],
    opacity: T,
    depth: T,
    weights: Option<&'a [T]>,
}

/// A compiled variant of [`render_ray_backward`].
type RenderRayBackward<T> = unsafe fn(
    Samples<'_, T>,
    &[T],
    RayGrads<'_, T>,
    &mut [T],
    &mut [T],
    Option<(&mut [T], &mut [T])>,
    &mut Vec<T>,
    usize,
);

per_ray_variants!(render_ray_backward_base, render_ray_backward_avx2, render_ray_backward, <T>,
    (x: Samples<'_, T>, w: &[T], g: RayGrads<'_, T>, gs: &mut [T], gv: &mut [T],
     gt: Option<(&mut [T], &mut [T])>, scratch: &mut Vec<T>), c, ());

/// One ray of [`render_backward`]; inlined with a constant `c` like [`render_ray`].
///
/// `dL/dw_k = go + gd z_k + gw_k + gc . v_k`, and with `T_{k+1} = T_k exp(-s_k)`:
/// `dL/ds_k = T_{k+1} dL/dw_k - sum_{j>k} w_j dL/dw_j`, then the chain rule through
/// `s_k = sigma_k (t1 - t0)` and the depth's `z_k = (t0 + t1) / 2`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn render_ray_backward<T: Real>(
    x: Samples<'_, T>,
    w: &[T],
    g: RayGrads<'_, T>,
    gs: &mut [T],
    gv: &mut [T],
    gt: Option<(&mut [T], &mut [T])>,
    scratch: &mut Vec<T>,
    c: usize,
) {
    let m = gs.len();
    let (t0, t1, sg, v) = (
        &x.t_starts[..m],
        &x.t_ends[..m],
        &x.sigmas[..m],
        &x.values[..m * c],
    );
    let (w, gv) = (&w[..m], &mut gv[..m * c]);
    // Pass 1 (vectorised): exp(-s_k); pass 2: running product T_{k+1}; both parked in `gs`.
    for k in 0..m {
        gs[k] = (-(sg[k] * (t1[k] - t0[k]))).exp_fast();
    }
    let mut trans = T::one();
    for gsk in gs.iter_mut() {
        trans *= *gsk;
        *gsk = trans;
    }
    // Pass 3 (forward order, streams the values once): dL/dv_k = w_k gc, and dL/dw_k.
    const LOCAL: usize = 4;
    let mut gc = [T::zero(); LOCAL];
    if c <= LOCAL {
        gc[..c].copy_from_slice(g.color);
    }
    let half = T::lit(0.5);
    let (go, gd) = (g.opacity, g.depth);
    scratch.clear();
    scratch.resize(m, T::zero());
    let dw = &mut scratch[..m];
    for k in 0..m {
        let mut d = go + gd * half * (t0[k] + t1[k]);
        for ch in 0..c {
            let gcc = if c <= LOCAL { gc[ch] } else { g.color[ch] };
            gv[k * c + ch] = w[k] * gcc;
            d += gcc * v[k * c + ch];
        }
        dw[k] = d;
    }
    if let Some(gw) = g.weights {
        for (d, &x) in dw.iter_mut().zip(&gw[..m]) {
            *d += x;
        }
    }
    // Pass 4 (reverse): the suffix sum is the only dependency between samples.
    let mut suffix = T::zero();
    let mut gt = gt;
    for k in (0..m).rev() {
        let g_s = gs[k] * dw[k] - suffix;
        suffix += dw[k] * w[k];
        gs[k] = g_s * (t1[k] - t0[k]);
        if let Some((g0, g1)) = gt.as_mut() {
            let g_z = half * w[k] * gd;
            g1[k] = g_s * sg[k] + g_z;
            g0[k] = g_z - g_s * sg[k];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fd_check(f: impl Fn(&[f32]) -> f64, x: &[f32], analytic: &[f32], tol: f64) {
        for k in 0..x.len() {
            let h = 1e-3f32;
            let (mut xp, mut xm) = (x.to_vec(), x.to_vec());
            xp[k] += h;
            xm[k] -= h;
            let fd = (f(&xp) - f(&xm)) / (2.0 * h as f64);
            assert!(
                (fd - analytic[k] as f64).abs() < tol,
                "k={k}: fd {fd} vs {}",
                analytic[k]
            );
        }
    }

    #[test]
    fn intervals_kernel_matches_thickness_kernel_and_finite_differences() {
        let t0 = [0.0, 0.5, 1.1, 2.0, 2.2, 0.0, 0.3];
        let t1 = [0.5, 1.1, 2.0, 2.2, 3.0, 0.3, 0.9];
        let sg = [0.3, 1.2, 0.0, 2.5, 0.7, 4.0, 0.2];
        let segs = Segments::from_offsets(&[0, 5, 5, 7], 7).unwrap();
        let sdt: Vec<f64> = (0..7).map(|k| sg[k] * (t1[k] - t0[k])).collect();
        let (a, b) = (
            weights_from_intervals(&t0, &t1, &sg, &segs).unwrap(),
            weights_from_density(&sdt, &segs).unwrap(),
        );
        assert_eq!(a, b);
        let (gw, gt, ga) = ([0.3, -1.0, 0.5, 2.0, 0.1, 1.0, -0.4], [0.2; 7], [-0.7; 7]);
        let loss = |t0: &[f64], t1: &[f64], sg: &[f64]| -> f64 {
            let w = weights_from_intervals(t0, t1, sg, &segs).unwrap();
            (0..7)
                .map(|k| gw[k] * w.weights[k] + gt[k] * w.trans[k] + ga[k] * w.alphas[k])
                .sum()
        };
        let (g0, g1, gs) = weights_from_intervals_backward(
            &t0,
            &t1,
            &sg,
            &a.trans,
            &a.alphas,
            Some(&gw),
            Some(&gt),
            Some(&ga),
            true,
            &segs,
        )
        .unwrap();
        let h = 1e-6;
        for k in 0..7 {
            let bump = |v: &[f64; 7], d: f64| {
                let mut v = *v;
                v[k] += d;
                v
            };
            let fd0 = (loss(&bump(&t0, h), &t1, &sg) - loss(&bump(&t0, -h), &t1, &sg)) / (2.0 * h);
            let fd1 = (loss(&t0, &bump(&t1, h), &sg) - loss(&t0, &bump(&t1, -h), &sg)) / (2.0 * h);
            let fds = (loss(&t0, &t1, &bump(&sg, h)) - loss(&t0, &t1, &bump(&sg, -h))) / (2.0 * h);
            assert!(
                (fd0 - g0[k]).abs() < 1e-6,
                "t_starts {k}: {fd0} vs {}",
                g0[k]
            );
            assert!((fd1 - g1[k]).abs() < 1e-6, "t_ends {k}: {fd1} vs {}", g1[k]);
            assert!((fds - gs[k]).abs() < 1e-6, "sigmas {k}: {fds} vs {}", gs[k]);
        }
    }

    #[test]
    fn weights_sum_to_one_minus_final_transmittance() {
        let s = vec![0.1, 0.5, 2.0, 0.0, 0.3];
        let segs = Segments::uniform(1, 5);
        let out = weights_from_density(&s, &segs).unwrap();
        let total: f32 = out.weights.iter().sum();
        let final_t = (-s.iter().sum::<f32>()).exp();
        assert!((total - (1.0 - final_t)).abs() < 1e-6);
    }

    #[test]
    fn zero_density_gives_zero_weights() {
        let segs = Segments::uniform(2, 3);
        let out = weights_from_density(&[0.0; 6], &segs).unwrap();
        assert!(out.weights.iter().all(|&w| w == 0.0));
        assert!(out.trans.iter().all(|&t| t == 1.0));
    }

    #[test]
    fn single_sample_and_empty_rays() {
        let segs = Segments::from_ray_indices(&[1], 3).unwrap();
        let out = weights_from_density(&[1.0], &segs).unwrap();
        assert!((out.weights[0] - (1.0 - (-1f32).exp())).abs() < 1e-7);
        let acc = accumulate(&out.weights, None, 1, RayMap::Segments(&segs)).unwrap();
        assert_eq!(acc[0], 0.0);
        assert_eq!(acc[2], 0.0);
    }

    #[test]
    fn density_backward_matches_finite_differences() {
        let s = vec![0.2f32, 0.9, 0.4, 1.3, 0.05, 0.7];
        let segs = Segments::from_ray_indices(&[0, 0, 0, 1, 1, 1], 2).unwrap();
        let gw = vec![0.3f32, -0.2, 0.8, 0.5, 0.1, -0.9];
        let gt = vec![0.1f32, 0.4, -0.3, 0.2, 0.6, 0.3];
        let ga = vec![-0.5f32, 0.2, 0.1, 0.7, -0.1, 0.2];
        let out = weights_from_density(&s, &segs).unwrap();
        let g = weights_from_density_backward(
            &out.trans,
            &out.alphas,
            Some(&gw),
            Some(&gt),
            Some(&ga),
            &segs,
        )
        .unwrap();
        let loss = |x: &[f32]| {
            let o = weights_from_density(x, &segs).unwrap();
            (0..x.len())
                .map(|i| (o.weights[i] * gw[i] + o.trans[i] * gt[i] + o.alphas[i] * ga[i]) as f64)
                .sum()
        };
        fd_check(loss, &s, &g, 2e-3);
    }

    #[test]
    fn alpha_backward_matches_finite_differences() {
        let a = vec![0.2f32, 0.9, 0.4, 0.3, 0.05, 0.7];
        let segs = Segments::from_ray_indices(&[0, 0, 0, 0, 2, 2], 3).unwrap();
        let gw = vec![0.3f32, -0.2, 0.8, 0.5, 0.1, -0.9];
        let gt = vec![0.1f32, 0.4, -0.3, 0.2, 0.6, 0.3];
        let (_, t) = weights_from_alpha(&a, &segs).unwrap();
        let g = weights_from_alpha_backward(&a, &t, Some(&gw), Some(&gt), &segs).unwrap();
        let loss = |x: &[f32]| {
            let (w, t) = weights_from_alpha(x, &segs).unwrap();
            (0..x.len())
                .map(|i| (w[i] * gw[i] + t[i] * gt[i]) as f64)
                .sum()
        };
        fd_check(loss, &a, &g, 2e-3);
    }

    #[test]
    fn accumulate_unsorted_and_backward() {
        let w = vec![0.5f32, 0.25, 1.0];
        let v = vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        let ri = vec![1i64, 0, 1];
        let map = RayMap::Indices {
            ray_indices: &ri,
            n_rays: 2,
        };
        let out = accumulate(&w, Some(&v), 2, map).unwrap();
        assert_eq!(out, vec![0.75, 1.0, 5.5, 7.0]);
        let (gw, gv) = accumulate_backward(&w, Some(&v), 2, map, &[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(gw, vec![3.0 + 8.0, 3.0 + 8.0, 15.0 + 24.0]);
        assert_eq!(gv, vec![1.5, 2.0, 0.25, 0.5, 3.0, 4.0]);
    }

    #[test]
    fn accumulate_rejects_bad_indices() {
        assert!(accumulate(
            &[1.0],
            None,
            1,
            RayMap::Indices {
                ray_indices: &[5],
                n_rays: 2
            }
        )
        .is_err());
        assert!(accumulate(
            &[1.0, 1.0],
            None,
            1,
            RayMap::Indices {
                ray_indices: &[0],
                n_rays: 2
            }
        )
        .is_err());
    }

    #[test]
    fn fused_render_matches_composition_and_finite_differences() {
        let ts = vec![1.0f64, 1.3, 1.9, 1.0, 1.2, 1.5, 2.1];
        let te = vec![1.3f64, 1.9, 2.4, 1.2, 1.5, 2.1, 2.6];
        let sg = vec![0.7f64, 1.9, 0.4, 2.3, 0.15, 0.7, 0.9];
        let segs = Segments::from_ray_indices(&[0, 0, 0, 1, 1, 1, 1], 2).unwrap();
        let v: Vec<f64> = (0..14).map(|i| (i as f64 * 0.37).sin()).collect();
        let x = |ts: &[f64], te: &[f64], sg: &[f64], v: &[f64]| -> Rendered<f64> {
            let xs = Samples {
                t_starts: ts,
                t_ends: te,
                sigmas: sg,
                values: v,
                channels: 2,
            };
            render(xs, &segs).unwrap()
        };
        let out = x(&ts, &te, &sg, &v);
        let sd: Vec<f64> = (0..7).map(|i| sg[i] * (te[i] - ts[i])).collect();
        let w = weights_from_density(&sd, &segs).unwrap();
        let col = accumulate(&w.weights, Some(&v), 2, RayMap::Segments(&segs)).unwrap();
        for (a, b) in out.color.iter().zip(&col) {
            assert!((a - b).abs() < 1e-12);
        }
        let (gc, go, gd) = (vec![0.3, -0.2, 0.5, 0.8], vec![0.4, -0.6], vec![0.1, 0.2]);
        let gw = vec![0.05, -0.1, 0.2, 0.0, 0.3, -0.2, 0.1];
        let loss = |o: Rendered<f64>| -> f64 {
            let mut l: f64 = o.color.iter().zip(&gc).map(|(a, b)| a * b).sum();
            for k in 0..2 {
                l += o.opacity[k] * go[k] + o.depth[k] * gd[k];
            }
            l + o.weights.iter().zip(&gw).map(|(a, b)| a * b).sum::<f64>()
        };
        let grads = RenderGrads {
            color: &gc,
            opacity: &go,
            depth: &gd,
            weights: Some(&gw),
        };
        let xs = Samples {
            t_starts: &ts,
            t_ends: &te,
            sigmas: &sg,
            values: &v,
            channels: 2,
        };
        let (g0, g1, gs, gv) = render_backward(xs, &out.weights, grads, true, &segs).unwrap();
        let (n0, n1, ns, _) = render_backward(xs, &out.weights, grads, false, &segs).unwrap();
        assert!(n0.is_empty() && n1.is_empty() && ns == gs);
        let h = 1e-6;
        let fd = |f: &dyn Fn(f64) -> f64| (f(h) - f(-h)) / (2.0 * h);
        let bump = |a: &[f64], k: usize, d: f64| {
            let mut b = a.to_vec();
            b[k] += d;
            b
        };
        for k in 0..7 {
            let d = fd(&|e| loss(x(&bump(&ts, k, e), &te, &sg, &v)));
            assert!((d - g0[k]).abs() < 1e-7, "t_starts {k}: {d} vs {}", g0[k]);
            let d = fd(&|e| loss(x(&ts, &bump(&te, k, e), &sg, &v)));
            assert!((d - g1[k]).abs() < 1e-7, "t_ends {k}: {d} vs {}", g1[k]);
            let d = fd(&|e| loss(x(&ts, &te, &bump(&sg, k, e), &v)));
            assert!((d - gs[k]).abs() < 1e-7, "sigmas {k}: {d} vs {}", gs[k]);
        }
        for (k, gvk) in gv.iter().enumerate() {
            let d = fd(&|e| loss(x(&ts, &te, &sg, &bump(&v, k, e))));
            assert!((d - gvk).abs() < 1e-7);
        }
    }
}
