//! Bindings of `raysplat_core::sampling`.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use raysplat_core::sampling::{self, Spacing};

use crate::convert::{
    borrow, detached, float_dtype, opt_slice, out, out_any, slice, with_float, Any, In, Out,
};

/// Stratified interval edges, flat `[n_rays * (n_samples + 1)]`.
#[pyfunction]
#[pyo3(signature = (t_near, t_far, n_samples, spacing, jitter=None))]
pub fn stratified_edges<'py>(
    py: Python<'py>,
    t_near: In<'py, f32>,
    t_far: In<'py, f32>,
    n_samples: usize,
    spacing: &str,
    jitter: Option<In<'py, f32>>,
) -> PyResult<Out<'py, f32>> {
    let spacing = match spacing {
        "linear" => Spacing::Linear,
        "disparity" => Spacing::Disparity,
        "contracted" => Spacing::Contracted,
        other => {
            return Err(PyValueError::new_err(format!(
                "spacing: expected 'linear', 'disparity' or 'contracted', got {other:?}"
            )))
        }
    };
    let (a, b, j) = (
        slice(&t_near, "t_near")?,
        slice(&t_far, "t_far")?,
        opt_slice(&jitter, "jitter")?,
    );
    Ok(out(
        py,
        detached(py, || {
            sampling::stratified_edges(a, b, n_samples, spacing, j)
        })?,
    ))
}

/// Inverse-CDF samples `F^{-1}(u)` of per-ray histograms.
#[pyfunction]
pub fn inverse_cdf<'py>(
    py: Python<'py>,
    t_edges: In<'py, f32>,
    weights: In<'py, f32>,
    n_rays: usize,
    u: In<'py, f32>,
) -> PyResult<Out<'py, f32>> {
    let (e, w, u) = (
        slice(&t_edges, "t_edges")?,
        slice(&weights, "weights")?,
        slice(&u, "u")?,
    );
    Ok(out(
        py,
        detached(py, || sampling::inverse_cdf(e, w, n_rays, u))?,
    ))
}

/// Importance-sampled interval edges, flat `[n_rays * (n_samples + 1)]`.
#[pyfunction]
#[pyo3(signature = (t_edges, weights, n_rays, n_samples, jitter=None))]
pub fn importance_sampling<'py>(
    py: Python<'py>,
    t_edges: In<'py, f32>,
    weights: In<'py, f32>,
    n_rays: usize,
    n_samples: usize,
    jitter: Option<In<'py, f32>>,
) -> PyResult<Out<'py, f32>> {
    let (e, w, j) = (
        slice(&t_edges, "t_edges")?,
        slice(&weights, "weights")?,
        opt_slice(&jitter, "jitter")?,
    );
    Ok(out(
        py,
        detached(py, || {
            sampling::importance_sampling(e, w, n_rays, n_samples, j)
        })?,
    ))
}

/// Mip-NeRF 360 outer measure of proposal weights over target intervals (float32 or float64).
#[pyfunction]
pub fn outer_measure<'py>(
    py: Python<'py>,
    t_edges_prop: Any<'py>,
    weights_prop: Any<'py>,
    t_edges: Any<'py>,
    n_rays: usize,
) -> PyResult<Any<'py>> {
    with_float!(float_dtype(&weights_prop, "weights_prop")?, T => {
        let pea = borrow::<T>(&t_edges_prop, "t_edges_prop")?;
        let pwa = borrow::<T>(&weights_prop, "weights_prop")?;
        let ea = borrow::<T>(&t_edges, "t_edges")?;
        let (pe, pw, e) = (slice(&pea, "t_edges_prop")?, slice(&pwa, "weights_prop")?, slice(&ea, "t_edges")?);
        Ok(out_any(py, detached(py, || sampling::outer_measure(pe, pw, e, n_rays))?))
    })
}

/// Gradient of `outer_measure` w.r.t. the proposal weights.
#[pyfunction]
pub fn outer_measure_backward<'py>(
    py: Python<'py>,
    t_edges_prop: Any<'py>,
    weights_prop: Any<'py>,
    t_edges: Any<'py>,
    n_rays: usize,
    v_outer: Any<'py>,
) -> PyResult<Any<'py>> {
    with_float!(float_dtype(&weights_prop, "weights_prop")?, T => {
        let pea = borrow::<T>(&t_edges_prop, "t_edges_prop")?;
        let pwa = borrow::<T>(&weights_prop, "weights_prop")?;
        let ea = borrow::<T>(&t_edges, "t_edges")?;
        let ga = borrow::<T>(&v_outer, "v_outer")?;
        let (pe, pw, e, g) = (
            slice(&pea, "t_edges_prop")?,
            slice(&pwa, "weights_prop")?,
            slice(&ea, "t_edges")?,
            slice(&ga, "v_outer")?,
        );
        Ok(out_any(py, detached(py, || sampling::outer_measure_backward(pe, pw, e, n_rays, g))?))
    })
}
