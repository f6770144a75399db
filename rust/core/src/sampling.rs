//! Distances along rays: stratified interval edges, inverse-CDF (importance) sampling of
//! piecewise-constant densities, and the mip-NeRF 360 outer measure used by the interlevel loss.

use rayon::prelude::*;

use crate::check::{expect_finite, expect_len};
use crate::error::{Error, Result};
use crate::isa::{avx2_variant, choose};
use crate::real::Real;

/// How `[near, far]` is divided between `n_samples` intervals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spacing {
    /// Uniform in distance `t`.
    Linear,
    /// Uniform in disparity `1 / t` (needs `near > 0`).
    Disparity,
    /// Uniform in mip-NeRF 360's contracted distance: `t` below 1, `2 - 1/t` above.
    Contracted,
}

#[inline]
fn contract(t: f32) -> f32 {
    if t <= 1.0 {
        t
    } else {
        2.0 - 1.0 / t
    }
}

#[inline]
fn uncontract(s: f32) -> f32 {
    if s <= 1.0 {
        s
    } else {
        1.0 / (2.0 - s).max(f32::MIN_POSITIVE)
    }
}

/// Interval edges `[n_rays, n_samples + 1]` between `t_near` and `t_far`.
///
/// With `jitter` (`[n_rays, n_samples + 1]` uniforms in `[0, 1)`), each interior edge moves
/// uniformly between the midpoints of its neighbouring bins and the end edges move inwards
/// (nerfstudio's stratified scheme), so edges stay sorted and cover at most `[near, far]`.
pub fn stratified_edges(
    t_near: &[f32],
    t_far: &[f32],
    n_samples: usize,
    spacing: Spacing,
    jitter: Option<&[f32]>,
) -> Result<Vec<f32>> {
    let n_rays = t_near.len();
    expect_len("t_far", t_far.len(), n_rays)?;
    if n_samples == 0 {
        return Err(Error::value("n_samples", "must be at least 1"));
    }
    let e = n_samples + 1;
    if let Some(j) = jitter {
        expect_len("jitter", j.len(), n_rays * e)?;
    }
    expect_finite("t_near", t_near)?;
    expect_finite("t_far", t_far)?;
    for r in 0..n_rays {
        if t_far[r] < t_near[r] {
            return Err(Error::value("t_far", format!("ray {r} has t_far < t_near")));
        }
        if spacing == Spacing::Disparity && t_near[r] <= 0.0 {
            return Err(Error::value("t_near", "disparity spacing needs t_near > 0"));
        }
        if spacing == Spacing::Contracted && t_near[r] < 0.0 {
            return Err(Error::value(
                "t_near",
                "contracted spacing needs t_near >= 0",
            ));
        }
    }
    let mut out = crate::output::zeros::<f32>(n_rays * e);
    let inv = 1.0 / n_samples as f32;
    crate::parallel::install(|| {
        out.par_chunks_mut(e)
            .enumerate()
            .with_min_len(256)
            .for_each(|(r, edges)| {
                let (near, far) = (t_near[r], t_far[r]);
                for (k, edge) in edges.iter_mut().enumerate() {
                    let mut s = k as f32 * inv;
                    if let Some(j) = jitter {
                        let lo = if k == 0 { 0.0 } else { (k as f32 - 0.5) * inv };
                        let hi = if k == n_samples {
                            1.0
                        } else {
                            (k as f32 + 0.5) * inv
                        };
                        s = lo + (hi - lo) * j[r * e + k];
                    }
                    *edge = match spacing {
                        Spacing::Linear => near + (far - near) * s,
                        Spacing::Disparity => 1.0 / ((1.0 - s) / near + s / far),
                        Spacing::Contracted => {
                            let (a, b) = (contract(near), contract(far));
                            uncontract(a + (b - a) * s).clamp(near, far)
                        }
                    };
                }
                // Guard against rounding breaking monotonicity or the [near, far] range; without
                // jitter the end edges are exactly near and far.
                if jitter.is_none() {
                    edges[0] = near;
                    edges[n_samples] = far;
                }
                edges[0] = edges[0].max(near).min(far);
                for k in 1..e {
                    edges[k] = edges[k].max(edges[k - 1]).min(far);
                }
            });
    });
    Ok(out)
}

fn check_histogram(edges: &[f32], weights: &[f32], n_rays: usize, n_bins: usize) -> Result<()> {
    if n_bins == 0 {
        return Err(Error::shape("weights", "needs at least one bin per ray"));
    }
    expect_len("t_edges", edges.len(), n_rays * (n_bins + 1))?;
    expect_len("weights", weights.len(), n_rays * n_bins)?;
    Ok(())
}

/// Why one ray's histogram is invalid (argument name, reason), if it is. Run inside the
/// kernels' parallel loops, where the ray's data is in cache anyway.
#[inline]
fn ray_problem(edges: &[f32], weights: &[f32]) -> Option<(&'static str, &'static str)> {
    if !edges[0].is_finite() {
        return Some(("t_edges", "contains NaN or infinite values"));
    }
    for (b, &w) in weights.iter().enumerate() {
        let (e0, e1) = (edges[b], edges[b + 1]);
        if !e1.is_finite() {
            return Some(("t_edges", "contains NaN or infinite values"));
        }
        if e1 < e0 {
            return Some(("t_edges", "must be sorted along each ray"));
        }
        if !w.is_finite() {
            return Some(("weights", "contains NaN or infinite values"));
        }
        if w < 0.0 {
            return Some(("weights", "must be non-negative"));
        }
    }
    None
}

/// Turns the first failing ray of a parallel loop into an error.
fn ray_error(res: std::result::Result<(), (usize, &'static str, &'static str)>) -> Result<()> {
    res.map_err(|(r, name, why)| Error::value(name, format!("{why} (ray {r})")))
}

/// Normalised CDF (`n_bins + 1` values from 0 to 1) of one ray's histogram. Rays whose weights
/// sum to zero fall back to the uniform density over `[t_0, t_B]` (weights = bin widths).
#[inline(always)]
fn ray_cdf(edges: &[f32], weights: &[f32], cdf: &mut Vec<f32>) {
    let n = weights.len();
    cdf.resize(n + 1, 0.0);
    let cdf = &mut cdf[..=n];
    cdf[0] = 0.0;
    cdf[1..].copy_from_slice(weights);
    let total = crate::prefix::inclusive_sum(&mut cdf[1..]);
    if total.is_nan() || total <= 0.0 {
        let width = edges[n] - edges[0];
        if width > 0.0 {
            for (b, c) in cdf.iter_mut().enumerate() {
                *c = (edges[b] - edges[0]) / width;
            }
        } else {
            for (b, c) in cdf.iter_mut().enumerate() {
                *c = b as f32 / n as f32;
            }
        }
    } else {
        let norm = 1.0 / total;
        for c in cdf.iter_mut() {
            *c = min_f32(*c * norm, 1.0);
        }
    }
    cdf[n] = 1.0;
}

/// Inverts a CDF at `u`, with `bin` the index such that `cdf[bin] <= u < cdf[bin + 1]`.
#[inline]
fn invert_in_bin(edges: &[f32], cdf: &[f32], bin: usize, u: f32) -> f32 {
    let (c0, c1) = (cdf[bin], cdf[bin + 1]);
    let (t0, t1) = (edges[bin], edges[bin + 1]);
    let denom = c1 - c0;
    let frac = if denom > 1e-10 {
        ((u - c0) / denom).clamp(0.0, 1.0)
    } else {
        0.5
    };
    t0 + frac * (t1 - t0)
}

/// Inverse-transform samples `t = F^{-1}(u)` of each ray's piecewise-constant density.
///
/// `edges` is `[n_rays, n_bins + 1]`, `weights` `[n_rays, n_bins]`, `u` `[n_rays, n_u]` in `[0, 1]`.
pub fn inverse_cdf(edges: &[f32], weights: &[f32], n_rays: usize, u: &[f32]) -> Result<Vec<f32>> {
    if n_rays == 0 {
        return Ok(Vec::new());
    }
    let n_bins = weights.len() / n_rays;
    check_histogram(edges, weights, n_rays, n_bins)?;
    if u.len() % n_rays != 0 {
        return Err(Error::shape("u", "must have one row per ray"));
    }
    expect_finite("u", u)?;
    let n_u = u.len() / n_rays;
    let mut out = crate::output::zeros::<f32>(u.len());
    if n_u == 0 {
        return Ok(out);
    }
    ray_error(crate::parallel::install(|| {
        out.par_chunks_mut(n_u)
            .enumerate()
            .with_min_len(64)
            .try_for_each_init(Vec::new, |cdf, (r, t)| {
                let e = &edges[r * (n_bins + 1)..(r + 1) * (n_bins + 1)];
                let w = &weights[r * n_bins..(r + 1) * n_bins];
                if ray_is_bad(e, w) {
                    let (name, why) = ray_problem(e, w).unwrap_or(INVALID);
                    return Err((r, name, why));
                }
                ray_cdf(e, w, cdf);
                for (k, tk) in t.iter_mut().enumerate() {
                    let uk = u[r * n_u + k].clamp(0.0, 1.0);
                    // last bin whose lower CDF is <= u
                    let bin = cdf[1..n_bins].partition_point(|&c| c <= uk);
                    *tk = invert_in_bin(e, cdf, bin, uk);
                }
                Ok(())
            })
    }))?;
    Ok(out)
}

/// Fallback for [`ray_problem`] (never used: it checks what [`ray_is_bad`] checks).
const INVALID: (&str, &str) = ("t_edges", "is invalid");

/// Whether any value of one ray's histogram is invalid (non-finite, unsorted edges, negative
/// weights). Branch-free so it vectorises; [`ray_problem`] then names the failure.
#[inline(always)]
fn ray_is_bad(edges: &[f32], weights: &[f32]) -> bool {
    let mut bad = !edges[0].is_finite();
    for (pair, &w) in edges.windows(2).zip(weights) {
        bad |= !pair[1].is_finite() | (pair[1] < pair[0]) | !w.is_finite() | (w < 0.0);
    }
    bad
}

/// Per-thread scratch of [`importance_sampling`].
#[derive(Default)]
struct Scratch {
    /// The ray's normalised CDF.
    cdf: Vec<f32>,
    /// Per bin: `t` where the bin's inverse CDF starts and its slope `dt / dcdf`.
    t_start: Vec<f32>,
    slope: Vec<f32>,
    /// For each CDF knot, the index of the first sample at or above it.
    first: Vec<f32>,
    /// For each sample index, the last knot whose first sample it is (0 if none).
    last_knot: Vec<u32>,
}

/// Samples `u_k = min((k + b) / n, 1)` of one ray's inverse CDF into `out[1..=n]`.
///
/// Equivalent to walking the bins once for increasing `u`, but free of data-dependent branches
/// (the walk mispredicts about once per bin) and vectorisable: every CDF knot finds the first
/// sample at or above it in closed form, a running maximum over those positions gives each
/// sample's bin, and each bin's inverse is a precomputed line.
#[inline(always)]
fn sample_uniform_u(e: &[f32], b: f32, scratch: &mut Scratch, out: &mut [f32]) {
    let n = out.len() - 1;
    let Scratch {
        cdf,
        t_start,
        slope,
        first,
        last_knot,
    } = scratch;
    let n_bins = cdf.len() - 1;
    let (inv_n, n_f) = (1.0 / n as f32, n as f32);
    // Per-bin lines t = t_start + (u - cdf[i]) * slope; flat bins map to their midpoint.
    t_start.resize(n_bins, 0.0);
    slope.resize(n_bins, 0.0);
    let (t_start, slope) = (&mut t_start[..n_bins], &mut slope[..n_bins]);
    let (c_lo, c_hi) = (&cdf[..n_bins], &cdf[1..=n_bins]);
    let (t_lo, t_hi) = (&e[..n_bins], &e[1..=n_bins]);
    for i in 0..n_bins {
        let (c0, c1, t0, t1) = (c_lo[i], c_hi[i], t_lo[i], t_hi[i]);
        let flat = c1 - c0 <= 1e-10; // the CDF is finite: no NaN here
        t_start[i] = if flat { t0 + 0.5 * (t1 - t0) } else { t0 };
        slope[i] = if flat { 0.0 } else { (t1 - t0) / (c1 - c0) };
    }
    // first[i]: first k with cdf[i + 1] <= u_k. The closed-form guess is corrected by one step
    // either way so that it agrees exactly with that comparison. (The last knot, cdf = 1, is
    // computed too, so the loop runs over a whole number of vectors, but never used.)
    first.resize(n_bins, 0.0);
    for (f, &c) in first.iter_mut().zip(c_hi) {
        let k = min_f32(max_f32((c * n_f - b).ceil(), 0.0), n_f);
        let down = (k > 0.0) & (c <= min_f32((k - 1.0 + b) * inv_n, 1.0));
        let k = if down { k - 1.0 } else { k };
        let up = (k < n_f) & (c > min_f32((k + b) * inv_n, 1.0));
        *f = if up { k + 1.0 } else { k };
    }
    // Knots are sorted, so the last write to each slot is the largest knot starting there.
    last_knot.clear();
    last_knot.resize(n + 1, 0);
    for (i, &k) in first[..n_bins - 1].iter().enumerate() {
        // SAFETY: k is an integer in [0, n] by construction above.
        let k: u32 = unsafe { k.to_int_unchecked() };
        last_knot[k as usize] = i as u32 + 1;
    }
    let mut bin = 0u32;
    for (k, (slot, &knot)) in out[1..].iter_mut().zip(last_knot.iter()).enumerate() {
        bin = bin.max(knot);
        let i = bin as usize;
        let u = min_f32((k as f32 + b) * inv_n, 1.0);
        *slot = min_f32(t_start[i] + (u - c_lo[i]) * slope[i], t_hi[i]);
    }
}

/// `max` for non-NaN operands (a single instruction, unlike `f32::max`).
#[inline(always)]
fn max_f32(a: f32, b: f32) -> f32 {
    if a > b {
        a
    } else {
        b
    }
}

/// `min` for non-NaN operands (a single instruction, unlike `f32::min`).
#[inline(always)]
fn min_f32(a: f32, b: f32) -> f32 {
    if a < b {
        a
    } else {
        b
    }
}

/// A compiled variant of [`importance_ray`].
type ImportanceRay = unsafe fn(&[f32], &[f32], f32, &mut Scratch, &mut [f32]) -> bool;

avx2_variant!(importance_ray_avx2 => importance_ray,
    (e: &[f32], w: &[f32], b: f32, scratch: &mut Scratch, new_edges: &mut [f32]) -> bool);

/// One ray of [`importance_sampling`] with offset `b`: writes `new_edges`, or returns `false`
/// when the histogram is invalid.
#[inline(always)]
fn importance_ray(
    e: &[f32],
    w: &[f32],
    b: f32,
    scratch: &mut Scratch,
    new_edges: &mut [f32],
) -> bool {
    let n_bins = w.len();
    let n_samples = new_edges.len() - 1;
    if ray_is_bad(e, w) {
        return false;
    }
    ray_cdf(e, w, &mut scratch.cdf);
    let (t_min, t_max) = (e[0], e[n_bins]);
    if n_samples == 1 {
        new_edges[0] = t_min;
        new_edges[1] = t_max;
        return true;
    }
    sample_uniform_u(e, b, scratch, new_edges);
    // Edges: midpoints between samples, the ends reflected and clipped (in place: edge k reads
    // samples k-1 and k, stored at k and k+1).
    let (s0, s1) = (new_edges[1], new_edges[2]);
    let (sl, sp) = (new_edges[n_samples], new_edges[n_samples - 1]);
    for k in 1..n_samples {
        new_edges[k] = 0.5 * (new_edges[k] + new_edges[k + 1]);
    }
    new_edges[0] = (s0 - 0.5 * (s1 - s0)).max(t_min);
    new_edges[n_samples] = (sl + 0.5 * (sl - sp)).min(t_max);
    true
}

/// Importance sampling: `n_samples` new intervals per ray (`[n_rays, n_samples + 1]` edges).
///
/// Sample `k` sits at `F^{-1}((k + b) / n)` with `b = 0.5` or, with `jitter` (`[n_rays]` values
/// in `[0, 1)`), one shared offset per ray. New edges are the midpoints between consecutive
/// samples; the first and last edge reflect the adjacent midpoint and are clipped to the
/// ray's original range (nerfacc / mip-NeRF 360 semantics).
pub fn importance_sampling(
    edges: &[f32],
    weights: &[f32],
    n_rays: usize,
    n_samples: usize,
    jitter: Option<&[f32]>,
) -> Result<Vec<f32>> {
    if n_samples == 0 {
        return Err(Error::value("n_samples", "must be at least 1"));
    }
    if n_rays == 0 {
        return Ok(Vec::new());
    }
    let n_bins = weights.len() / n_rays;
    check_histogram(edges, weights, n_rays, n_bins)?;
    if let Some(j) = jitter {
        expect_len("jitter", j.len(), n_rays)?;
    }
    let e_out = n_samples + 1;
    let mut out = crate::output::Output::<f32>::new(n_rays * e_out);
    let pieces = out.pieces();
    let kernel: ImportanceRay = choose!(importance_ray, importance_ray_avx2);
    ray_error(crate::parallel::install(|| {
        (0..n_rays)
            .into_par_iter()
            .with_min_len(512)
            .try_for_each_init(Scratch::default, |scratch, r| {
                let e = &edges[r * (n_bins + 1)..(r + 1) * (n_bins + 1)];
                let w = &weights[r * n_bins..(r + 1) * n_bins];
                let b = jitter.map_or(0.5, |j| j[r].clamp(0.0, 1.0));
                // SAFETY: rays claim disjoint rows.
                let new_edges = unsafe { pieces.claim(r * e_out..(r + 1) * e_out) };
                // SAFETY: the AVX2 variant only runs on CPUs that have it.
                let ok = unsafe { kernel(e, w, b, scratch, new_edges) };
                if !ok {
                    let (name, why) = ray_problem(e, w).unwrap_or(INVALID);
                    return Err((r, name, why));
                }
                Ok(())
            })
    }))?;
    // SAFETY: every ray claimed its row (an error returns above).
    Ok(unsafe { out.finish() })
}

/// Index pairs for the outer measure: for each query edge, the last key edge `<=` it and the
/// first key edge `>` it (clamped), as in mip-NeRF 360's `searchsorted`.
#[inline]
fn outer_bounds<T: Real>(key: &[T], q: T) -> (usize, usize) {
    let p = key.partition_point(|&k| k <= q);
    let lo = p.saturating_sub(1);
    let hi = p.min(key.len() - 1);
    (lo, hi)
}

/// Mip-NeRF 360 outer measure: for each target interval `[s_j, s_{j+1}]`, the summed proposal
/// weight of every proposal interval that overlaps it. Shapes: `prop_edges [R, P+1]`,
/// `prop_weights [R, P]`, `edges [R, S+1]` → `[R, S]`.
pub fn outer_measure<T: Real>(
    prop_edges: &[T],
    prop_weights: &[T],
    edges: &[T],
    n_rays: usize,
) -> Result<Vec<T>> {
    let (p, s) = outer_dims(prop_edges, prop_weights, edges, n_rays)?;
    let mut out = crate::output::zeros(n_rays * s);
    if s == 0 {
        return Ok(out);
    }
    crate::parallel::install(|| {
        out.par_chunks_mut(s)
            .enumerate()
            .with_min_len(64)
            .for_each_init(Vec::new, |cum, (r, o)| {
                let key = &prop_edges[r * (p + 1)..(r + 1) * (p + 1)];
                let w = &prop_weights[r * p..(r + 1) * p];
                cum.clear();
                cum.push(T::zero());
                let mut acc = T::zero();
                for &x in w {
                    acc += x;
                    cum.push(acc);
                }
                let q = &edges[r * (s + 1)..(r + 1) * (s + 1)];
                for j in 0..s {
                    let (lo, _) = outer_bounds(key, q[j]);
                    let (_, hi) = outer_bounds(key, q[j + 1]);
                    o[j] = cum[hi] - cum[lo];
                }
            });
    });
    Ok(out)
}

/// Gradient of [`outer_measure`] w.r.t. `prop_weights`, given `v_outer` `[R, S]`.
pub fn outer_measure_backward<T: Real>(
    prop_edges: &[T],
    prop_weights: &[T],
    edges: &[T],
    n_rays: usize,
    v_outer: &[T],
) -> Result<Vec<T>> {
    let (p, s) = outer_dims(prop_edges, prop_weights, edges, n_rays)?;
    expect_len("v_outer", v_outer.len(), n_rays * s)?;
    let mut out = crate::output::zeros(n_rays * p);
    if p == 0 {
        return Ok(out);
    }
    crate::parallel::install(|| {
        out.par_chunks_mut(p)
            .enumerate()
            .with_min_len(64)
            .for_each_init(Vec::new, |diff, (r, o)| {
                let key = &prop_edges[r * (p + 1)..(r + 1) * (p + 1)];
                let q = &edges[r * (s + 1)..(r + 1) * (s + 1)];
                // o_j = cum[hi] - cum[lo] = sum of w_k for k in lo..hi: a difference array.
                diff.clear();
                diff.resize(p + 1, T::zero());
                for j in 0..s {
                    let (lo, _) = outer_bounds(key, q[j]);
                    let (_, hi) = outer_bounds(key, q[j + 1]);
                    if hi > lo {
                        diff[lo] += v_outer[r * s + j];
                        diff[hi] -= v_outer[r * s + j];
                    }
                }
                let mut acc = T::zero();
                for k in 0..p {
                    acc += diff[k];
                    o[k] = acc;
                }
            });
    });
    Ok(out)
}

fn outer_dims<T: Real>(
    prop_edges: &[T],
    prop_weights: &[T],
    edges: &[T],
    n_rays: usize,
) -> Result<(usize, usize)> {
    if n_rays == 0 {
        return Ok((0, 0));
    }
    let p = prop_weights.len() / n_rays;
    expect_len("weights_prop", prop_weights.len(), n_rays * p)?;
    expect_len("t_edges_prop", prop_edges.len(), n_rays * (p + 1))?;
    if edges.len() % n_rays != 0 || edges.len() / n_rays < 1 {
        return Err(Error::shape("t_edges", "must have one row per ray"));
    }
    let s = edges.len() / n_rays - 1;
    expect_finite("t_edges_prop", prop_edges)?;
    expect_finite("weights_prop", prop_weights)?;
    expect_finite("t_edges", edges)?;
    Ok((p, s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_edges_are_uniform() {
        let e = stratified_edges(&[2.0], &[6.0], 4, Spacing::Linear, None).unwrap();
        assert_eq!(e, vec![2.0, 3.0, 4.0, 5.0, 6.0]);
    }

    #[test]
    fn disparity_edges_are_uniform_in_inverse_depth() {
        let e = stratified_edges(&[1.0], &[4.0], 3, Spacing::Disparity, None).unwrap();
        let inv: Vec<f32> = e.iter().map(|t| 1.0 / t).collect();
        for k in 0..3 {
            assert!((inv[k] - inv[k + 1] - 0.25).abs() < 1e-6);
        }
    }

    #[test]
    fn contracted_edges_cover_range_and_are_sorted() {
        let j: Vec<f32> = (0..33).map(|k| ((k * 7919) % 100) as f32 / 100.0).collect();
        let e = stratified_edges(&[0.1], &[1000.0], 32, Spacing::Contracted, Some(&j)).unwrap();
        assert!(e.windows(2).all(|p| p[0] <= p[1]));
        assert!(e[0] >= 0.1 && e[32] <= 1000.0);
    }

    #[test]
    fn zero_length_ray_is_fine() {
        let e = stratified_edges(&[1.0], &[1.0], 2, Spacing::Linear, None).unwrap();
        assert_eq!(e, vec![1.0; 3]);
    }

    /// The straightforward bin walk that `sample_uniform_u` replaces.
    fn walk_samples(e: &[f32], cdf: &[f32], b: f32, n: usize) -> Vec<f32> {
        let n_bins = cdf.len() - 1;
        let mut bin = 0;
        (0..n)
            .map(|k| {
                let u = ((k as f32 + b) * (1.0 / n as f32)).min(1.0);
                while bin + 1 < n_bins && cdf[bin + 1] <= u {
                    bin += 1;
                }
                invert_in_bin(e, cdf, bin, u)
            })
            .collect()
    }

    #[test]
    fn branch_free_sampler_matches_bin_walk() {
        let mut seed = 12345u64;
        let mut rand = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 40) as f32 / (1u64 << 24) as f32
        };
        for trial in 0..400 {
            let n_bins = 1 + trial % 70;
            let n = 1 + (trial * 7) % 90;
            let mut e = vec![0f32; n_bins + 1];
            for i in 1..=n_bins {
                // some zero-width bins, some zero-weight runs
                e[i] = e[i - 1] + if rand() < 0.1 { 0.0 } else { rand() };
            }
            let w: Vec<f32> = (0..n_bins)
                .map(|_| if rand() < 0.3 { 0.0 } else { rand() })
                .collect();
            let b = [0.0, 0.5, 0.999_999, 1.0, rand()][trial % 5];
            let mut scratch = Scratch::default();
            ray_cdf(&e, &w, &mut scratch.cdf);
            let want = walk_samples(&e, &scratch.cdf, b, n);
            let mut got = vec![0f32; n + 1];
            sample_uniform_u(&e, b, &mut scratch, &mut got);
            for k in 0..n {
                let tol = 1e-5 * (1.0 + e[n_bins]);
                assert!(
                    (got[k + 1] - want[k]).abs() <= tol,
                    "trial {trial} k {k}: {} vs {} cdf {:?} e {:?} first {:?} b {b}",
                    got[k + 1],
                    want[k],
                    scratch.cdf,
                    e,
                    scratch.first
                );
            }
        }
    }

    #[test]
    fn importance_sampling_matches_nerfacc_example() {
        // one ray with bins [0,1],[1,2] and equal mass, two samples: centres at 0.5 and 1.5
        let e = importance_sampling(&[0.0, 1.0, 2.0], &[0.5, 0.5], 1, 2, None).unwrap();
        assert_eq!(e, vec![0.0, 1.0, 2.0]);
    }

    #[test]
    fn all_zero_weights_fall_back_to_uniform() {
        let e = importance_sampling(&[0.0, 1.0, 4.0], &[0.0, 0.0], 1, 4, None).unwrap();
        assert_eq!(e, vec![0.0, 1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn inverse_cdf_reproduces_histogram_mass() {
        let edges = [0.0, 1.0, 3.0, 4.0];
        let w = [1.0, 0.0, 3.0];
        let n = 4000;
        let u: Vec<f32> = (0..n).map(|k| (k as f32 + 0.5) / n as f32).collect();
        let t = inverse_cdf(&edges, &w, 1, &u).unwrap();
        let in_first = t.iter().filter(|&&x| x < 1.0).count() as f32 / n as f32;
        let in_middle = t.iter().filter(|&&x| x > 1.0 && x < 3.0).count();
        assert!((in_first - 0.25).abs() < 1.0 / n as f32 + 1e-6);
        assert_eq!(in_middle, 0);
    }

    #[test]
    fn outer_measure_identical_histograms_is_identity() {
        let e = [0.0, 1.0, 2.0, 3.0];
        let w = [0.2, 0.5, 0.3];
        let o = outer_measure(&e, &w, &e, 1).unwrap();
        // identical edges: each interval's outer set also includes touching neighbours
        assert!(o.iter().zip(&w).all(|(a, b)| a >= b));
        let g = outer_measure_backward(&e, &w, &e, 1, &[1.0, 0.0, 0.0]).unwrap();
        let fd: Vec<f32> = (0..3)
            .map(|k| {
                let mut wp = w;
                wp[k] += 1.0;
                outer_measure(&e, &wp, &e, 1).unwrap()[0] - o[0]
            })
            .collect();
        assert_eq!(g, fd);
    }

    #[test]
    fn rejects_negative_weights_and_nan() {
        assert!(importance_sampling(&[0.0, 1.0], &[-1.0], 1, 2, None).is_err());
        assert!(importance_sampling(&[0.0, f32::NAN], &[1.0], 1, 2, None).is_err());
    }
}
