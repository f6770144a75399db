//! Bindings of `raysplat_core::volrend`.
//!
//! Samples are dense or packed as in [`crate::scan`] (`offsets=None` or segment offsets). The
//! float arguments of these differentiable kernels may be float32 or float64 (for gradient
//! checks), all of the same dtype; gradients of outputs are named `v_<output>`.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use raysplat_core::volrend::{self, RayMap};
use raysplat_core::Segments;

use crate::convert::{
    borrow, borrow_opt, detached, float_dtype, opt_slice, out_any, slice, with_float, Any, In,
};
use crate::scan::segments;

/// Weights, transmittance and alphas from `sigma * dt`.
#[pyfunction]
pub fn weights_from_density<'py>(
    py: Python<'py>,
    sigma_dt: Any<'py>,
    offsets: Option<In<'py, i64>>,
    n_rays: usize,
) -> PyResult<(Any<'py>, Any<'py>, Any<'py>)> {
    let offsets = opt_slice(&offsets, "offsets")?;
    with_float!(float_dtype(&sigma_dt, "sigmas")?, T => {
        let sa = borrow::<T>(&sigma_dt, "sigmas")?;
        let s = slice(&sa, "sigmas")?;
        let segs = segments(offsets, n_rays, s.len())?;
        let w = detached(py, || volrend::weights_from_density(s, &segs))?;
        Ok((out_any(py, w.weights), out_any(py, w.trans), out_any(py, w.alphas)))
    })
}

/// Weights, transmittance and alphas of intervals with densities (`sigma * dt` formed inside).
#[pyfunction]
pub fn weights_from_intervals<'py>(
    py: Python<'py>,
    t_starts: Any<'py>,
    t_ends: Any<'py>,
    sigmas: Any<'py>,
    offsets: Option<In<'py, i64>>,
    n_rays: usize,
) -> PyResult<(Any<'py>, Any<'py>, Any<'py>)> {
    let offsets = opt_slice(&offsets, "offsets")?;
    with_float!(float_dtype(&sigmas, "sigmas")?, T => {
        let (t0a, t1a) = (borrow::<T>(&t_starts, "t_starts")?, borrow::<T>(&t_ends, "t_ends")?);
        let sa = borrow::<T>(&sigmas, "sigmas")?;
        let (t0, t1) = (slice(&t0a, "t_starts")?, slice(&t1a, "t_ends")?);
        let s = slice(&sa, "sigmas")?;
        let segs = segments(offsets, n_rays, s.len())?;
        let w = detached(py, || volrend::weights_from_intervals(t0, t1, s, &segs))?;
        Ok((out_any(py, w.weights), out_any(py, w.trans), out_any(py, w.alphas)))
    })
}

/// Gradients of `weights_from_intervals` w.r.t. `(t_starts, t_ends, sigmas)` (the first two
/// empty unless `need_t`).
#[pyfunction]
#[pyo3(signature = (t_starts, t_ends, sigmas, trans, alphas, v_weights, v_trans, v_alphas, need_t, offsets, n_rays))]
#[allow(clippy::too_many_arguments)]
pub fn weights_from_intervals_backward<'py>(
    py: Python<'py>,
    t_starts: Any<'py>,
    t_ends: Any<'py>,
    sigmas: Any<'py>,
    trans: Any<'py>,
    alphas: Any<'py>,
    v_weights: Option<Any<'py>>,
    v_trans: Option<Any<'py>>,
    v_alphas: Option<Any<'py>>,
    need_t: bool,
    offsets: Option<In<'py, i64>>,
    n_rays: usize,
) -> PyResult<(Any<'py>, Any<'py>, Any<'py>)> {
    let offsets = opt_slice(&offsets, "offsets")?;
    with_float!(float_dtype(&sigmas, "sigmas")?, T => {
        let (t0a, t1a) = (borrow::<T>(&t_starts, "t_starts")?, borrow::<T>(&t_ends, "t_ends")?);
        let (sa, ta, aa) = (
            borrow::<T>(&sigmas, "sigmas")?,
            borrow::<T>(&trans, "trans")?,
            borrow::<T>(&alphas, "alphas")?,
        );
        let gwa = borrow_opt::<T>(&v_weights, "v_weights")?;
        let gta = borrow_opt::<T>(&v_trans, "v_trans")?;
        let gaa = borrow_opt::<T>(&v_alphas, "v_alphas")?;
        let (t0, t1) = (slice(&t0a, "t_starts")?, slice(&t1a, "t_ends")?);
        let (s, t, a) = (slice(&sa, "sigmas")?, slice(&ta, "trans")?, slice(&aa, "alphas")?);
        let (gw, gt, ga) = (
            opt_slice(&gwa, "v_weights")?,
            opt_slice(&gta, "v_trans")?,
            opt_slice(&gaa, "v_alphas")?,
        );
        let segs = segments(offsets, n_rays, s.len())?;
        let (g0, g1, gs) = detached(py, || {
            volrend::weights_from_intervals_backward(t0, t1, s, t, a, gw, gt, ga, need_t, &segs)
        })?;
        Ok((out_any(py, g0), out_any(py, g1), out_any(py, gs)))
    })
}

/// Gradient of `weights_from_density` w.r.t. `sigma * dt`.
#[pyfunction]
#[pyo3(signature = (trans, alphas, v_weights, v_trans, v_alphas, offsets, n_rays))]
#[allow(clippy::too_many_arguments)]
pub fn weights_from_density_backward<'py>(
    py: Python<'py>,
    trans: Any<'py>,
    alphas: Any<'py>,
    v_weights: Option<Any<'py>>,
    v_trans: Option<Any<'py>>,
    v_alphas: Option<Any<'py>>,
    offsets: Option<In<'py, i64>>,
    n_rays: usize,
) -> PyResult<Any<'py>> {
    let offsets = opt_slice(&offsets, "offsets")?;
    with_float!(float_dtype(&trans, "trans")?, T => {
        let (ta, aa) = (borrow::<T>(&trans, "trans")?, borrow::<T>(&alphas, "alphas")?);
        let gwa = borrow_opt::<T>(&v_weights, "v_weights")?;
        let gta = borrow_opt::<T>(&v_trans, "v_trans")?;
        let gaa = borrow_opt::<T>(&v_alphas, "v_alphas")?;
        let (t, a) = (slice(&ta, "trans")?, slice(&aa, "alphas")?);
        let (gw, gt, ga) = (
            opt_slice(&gwa, "v_weights")?,
            opt_slice(&gta, "v_trans")?,
            opt_slice(&gaa, "v_alphas")?,
        );
        let segs = segments(offsets, n_rays, t.len())?;
        Ok(out_any(py, detached(py, || volrend::weights_from_density_backward(t, a, gw, gt, ga, &segs))?))
    })
}

/// Weights and transmittance from per-sample alphas.
#[pyfunction]
pub fn weights_from_alpha<'py>(
    py: Python<'py>,
    alphas: Any<'py>,
    offsets: Option<In<'py, i64>>,
    n_rays: usize,
) -> PyResult<(Any<'py>, Any<'py>)> {
    let offsets = opt_slice(&offsets, "offsets")?;
    with_float!(float_dtype(&alphas, "alphas")?, T => {
        let aa = borrow::<T>(&alphas, "alphas")?;
        let a = slice(&aa, "alphas")?;
        let segs = segments(offsets, n_rays, a.len())?;
        let (w, t) = detached(py, || volrend::weights_from_alpha(a, &segs))?;
        Ok((out_any(py, w), out_any(py, t)))
    })
}

/// Gradient of `weights_from_alpha` w.r.t. the alphas.
#[pyfunction]
#[pyo3(signature = (alphas, trans, v_weights, v_trans, offsets, n_rays))]
pub fn weights_from_alpha_backward<'py>(
    py: Python<'py>,
    alphas: Any<'py>,
    trans: Any<'py>,
    v_weights: Option<Any<'py>>,
    v_trans: Option<Any<'py>>,
    offsets: Option<In<'py, i64>>,
    n_rays: usize,
) -> PyResult<Any<'py>> {
    let offsets = opt_slice(&offsets, "offsets")?;
    with_float!(float_dtype(&alphas, "alphas")?, T => {
        let (aa, ta) = (borrow::<T>(&alphas, "alphas")?, borrow::<T>(&trans, "trans")?);
        let gwa = borrow_opt::<T>(&v_weights, "v_weights")?;
        let gta = borrow_opt::<T>(&v_trans, "v_trans")?;
        let (a, t) = (slice(&aa, "alphas")?, slice(&ta, "trans")?);
        let (gw, gt) = (opt_slice(&gwa, "v_weights")?, opt_slice(&gta, "v_trans")?);
        let segs = segments(offsets, n_rays, a.len())?;
        Ok(out_any(py, detached(py, || volrend::weights_from_alpha_backward(a, t, gw, gt, &segs))?))
    })
}

/// Segments for `offsets` (packed, sorted) or for dense input (neither offsets nor indices).
fn accumulate_segments(
    offsets: Option<&[i64]>,
    ray_indices: Option<&[i64]>,
    n_rays: usize,
    n_samples: usize,
) -> PyResult<Option<Segments>> {
    match (offsets, ray_indices) {
        (None, Some(_)) => Ok(None),
        _ => segments(offsets, n_rays, n_samples).map(Some),
    }
}

fn ray_map<'a>(
    segs: Option<&'a Segments>,
    ray_indices: Option<&'a [i64]>,
    n_rays: usize,
) -> PyResult<RayMap<'a>> {
    match (segs, ray_indices) {
        (Some(s), _) => Ok(RayMap::Segments(s)),
        (None, Some(ri)) => Ok(RayMap::Indices {
            ray_indices: ri,
            n_rays,
        }),
        (None, None) => Err(PyValueError::new_err(
            "accumulate needs offsets or ray_indices",
        )),
    }
}

/// Per-ray weighted sums of `values` (or of the weights when `values` is None).
#[pyfunction]
#[pyo3(signature = (weights, values, channels, n_rays, offsets=None, ray_indices=None))]
pub fn accumulate<'py>(
    py: Python<'py>,
    weights: Any<'py>,
    values: Option<Any<'py>>,
    channels: usize,
    n_rays: usize,
    offsets: Option<In<'py, i64>>,
    ray_indices: Option<In<'py, i64>>,
) -> PyResult<Any<'py>> {
    let (offsets, ri) = (
        opt_slice(&offsets, "offsets")?,
        opt_slice(&ray_indices, "ray_indices")?,
    );
    with_float!(float_dtype(&weights, "weights")?, T => {
        let (wa, va) = (borrow::<T>(&weights, "weights")?, borrow_opt::<T>(&values, "values")?);
        let (w, v) = (slice(&wa, "weights")?, opt_slice(&va, "values")?);
        let segs = accumulate_segments(offsets, ri, n_rays, w.len())?;
        let map = ray_map(segs.as_ref(), ri, n_rays)?;
        Ok(out_any(py, detached(py, || volrend::accumulate(w, v, channels, map))?))
    })
}

/// Gradients of `accumulate`: `(v_weights, v_values)` (the latter empty without values).
#[pyfunction]
#[pyo3(signature = (weights, values, channels, n_rays, v_out, offsets=None, ray_indices=None))]
#[allow(clippy::too_many_arguments)]
pub fn accumulate_backward<'py>(
    py: Python<'py>,
    weights: Any<'py>,
    values: Option<Any<'py>>,
    channels: usize,
    n_rays: usize,
    v_out: Any<'py>,
    offsets: Option<In<'py, i64>>,
    ray_indices: Option<In<'py, i64>>,
) -> PyResult<(Any<'py>, Any<'py>)> {
    let (offsets, ri) = (
        opt_slice(&offsets, "offsets")?,
        opt_slice(&ray_indices, "ray_indices")?,
    );
    with_float!(float_dtype(&weights, "weights")?, T => {
        let (wa, va) = (borrow::<T>(&weights, "weights")?, borrow_opt::<T>(&values, "values")?);
        let ga = borrow::<T>(&v_out, "v_out")?;
        let (w, v, g) = (slice(&wa, "weights")?, opt_slice(&va, "values")?, slice(&ga, "v_out")?);
        let segs = accumulate_segments(offsets, ri, n_rays, w.len())?;
        let map = ray_map(segs.as_ref(), ri, n_rays)?;
        let (gw, gv) = detached(py, || volrend::accumulate_backward(w, v, channels, map, g))?;
        Ok((out_any(py, gw), out_any(py, gv)))
    })
}

/// Fused volume rendering of intervals: `(color [R*C], opacity [R], depth [R], weights [N])`.
#[pyfunction]
#[pyo3(signature = (t_starts, t_ends, sigmas, values, channels, offsets, n_rays))]
#[allow(clippy::too_many_arguments)]
pub fn render<'py>(
    py: Python<'py>,
    t_starts: Any<'py>,
    t_ends: Any<'py>,
    sigmas: Any<'py>,
    values: Any<'py>,
    channels: usize,
    offsets: Option<In<'py, i64>>,
    n_rays: usize,
) -> PyResult<(Any<'py>, Any<'py>, Any<'py>, Any<'py>)> {
    let offsets = opt_slice(&offsets, "offsets")?;
    with_float!(float_dtype(&sigmas, "sigmas")?, T => {
        let (a0, a1) = (borrow::<T>(&t_starts, "t_starts")?, borrow::<T>(&t_ends, "t_ends")?);
        let (sa, va) = (borrow::<T>(&sigmas, "sigmas")?, borrow::<T>(&values, "rgbs")?);
        let x = volrend::Samples {
            t_starts: slice(&a0, "t_starts")?,
            t_ends: slice(&a1, "t_ends")?,
            sigmas: slice(&sa, "sigmas")?,
            values: slice(&va, "rgbs")?,
            channels,
        };
        let segs = segments(offsets, n_rays, x.sigmas.len())?;
        let o = detached(py, || volrend::render(x, &segs))?;
        Ok((out_any(py, o.color), out_any(py, o.opacity), out_any(py, o.depth), out_any(py, o.weights)))
    })
}

/// Gradients `(t_starts, t_ends, sigmas, values)` of `render`.
#[pyfunction]
#[pyo3(signature = (t_starts, t_ends, sigmas, values, channels, weights, v_colors, v_opacities, v_depths, v_weights, need_t, offsets, n_rays))]
#[allow(clippy::too_many_arguments)]
pub fn render_backward<'py>(
    py: Python<'py>,
    t_starts: Any<'py>,
    t_ends: Any<'py>,
    sigmas: Any<'py>,
    values: Any<'py>,
    channels: usize,
    weights: Any<'py>,
    v_colors: Any<'py>,
    v_opacities: Any<'py>,
    v_depths: Any<'py>,
    v_weights: Option<Any<'py>>,
    need_t: bool,
    offsets: Option<In<'py, i64>>,
    n_rays: usize,
) -> PyResult<(Any<'py>, Any<'py>, Any<'py>, Any<'py>)> {
    let offsets = opt_slice(&offsets, "offsets")?;
    with_float!(float_dtype(&sigmas, "sigmas")?, T => {
        let (a0, a1) = (borrow::<T>(&t_starts, "t_starts")?, borrow::<T>(&t_ends, "t_ends")?);
        let (sa, va, wa) = (borrow::<T>(&sigmas, "sigmas")?, borrow::<T>(&values, "rgbs")?, borrow::<T>(&weights, "weights")?);
        let (gca, goa, gda) = (
            borrow::<T>(&v_colors, "v_colors")?,
            borrow::<T>(&v_opacities, "v_opacities")?,
            borrow::<T>(&v_depths, "v_depths")?,
        );
        let gwa = borrow_opt::<T>(&v_weights, "v_weights")?;
        let x = volrend::Samples {
            t_starts: slice(&a0, "t_starts")?,
            t_ends: slice(&a1, "t_ends")?,
            sigmas: slice(&sa, "sigmas")?,
            values: slice(&va, "rgbs")?,
            channels,
        };
        let g = volrend::RenderGrads {
            color: slice(&gca, "v_colors")?,
            opacity: slice(&goa, "v_opacities")?,
            depth: slice(&gda, "v_depths")?,
            weights: opt_slice(&gwa, "v_weights")?,
        };
        let w = slice(&wa, "weights")?;
        let segs = segments(offsets, n_rays, x.sigmas.len())?;
        let (a, b, c, d) = detached(py, || volrend::render_backward(x, w, g, need_t, &segs))?;
        Ok((out_any(py, a), out_any(py, b), out_any(py, c), out_any(py, d)))
    })
}
