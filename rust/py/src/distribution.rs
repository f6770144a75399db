//! Bindings of `raysplat_core::distribution` (NeRDF radiance-distribution integration).
//!
//! Float arguments are float32 or float64 (for gradient checks), all of one dtype; `taus` holds
//! `n_samples` shared values or `n_rays * n_samples`; gradients are named `v_<output>`.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use raysplat_core::distribution::{self, Distribution, OutputGrads, SigmaActivation};

use crate::convert::{borrow, borrow_opt, detached, float_dtype, out_any, slice, with_float, Any};

fn activation(name: &str) -> PyResult<SigmaActivation> {
    match name {
        "relu" => Ok(SigmaActivation::Relu),
        "softplus" => Ok(SigmaActivation::Softplus),
        other => Err(PyValueError::new_err(format!(
            "sigma_activation: expected 'relu' or 'softplus', got {other:?}"
        ))),
    }
}

/// `(colors [R*3], opacities [R], depths [R], sigmas [R*S] or None, t [R*S] or None)` of coefficients
/// `coeffs` `[R*4*24]` evaluated at normalised depths `taus`.
#[pyfunction]
#[pyo3(signature = (coeffs, taus, near, far, noise, n_samples, sigma_activation, last_delta, want_sigmas))]
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
pub fn render_distribution<'py>(
    py: Python<'py>,
    coeffs: Any<'py>,
    taus: Any<'py>,
    near: Any<'py>,
    far: Any<'py>,
    noise: Option<Any<'py>>,
    n_samples: usize,
    sigma_activation: &str,
    last_delta: f64,
    want_sigmas: bool,
) -> PyResult<(
    Any<'py>,
    Any<'py>,
    Any<'py>,
    Option<Any<'py>>,
    Option<Any<'py>>,
)> {
    let act = activation(sigma_activation)?;
    with_float!(float_dtype(&coeffs, "coeffs")?, T => {
        let (ca, ta) = (borrow::<T>(&coeffs, "coeffs")?, borrow::<T>(&taus, "taus")?);
        let (na, fa) = (borrow::<T>(&near, "near")?, borrow::<T>(&far, "far")?);
        let za = borrow_opt::<T>(&noise, "noise")?;
        let d = Distribution {
            coeffs: slice(&ca, "coeffs")?,
            taus: slice(&ta, "taus")?,
            near: slice(&na, "near")?,
            far: slice(&fa, "far")?,
            noise: za.as_ref().map(|z| slice(z, "noise")).transpose()?,
            n_samples,
            activation: act,
            last_delta: last_delta as T,
        };
        let o = detached(py, || distribution::render_distribution(&d, want_sigmas))?;
        Ok((
            out_any(py, o.colors),
            out_any(py, o.opacities),
            out_any(py, o.depths),
            o.sigmas.map(|s| out_any(py, s)),
            o.t.map(|t| out_any(py, t)),
        ))
    })
}

/// Gradient `v_coeffs` `[R*4*24]` of `render_distribution` from the output gradients.
#[pyfunction]
#[pyo3(signature = (coeffs, taus, near, far, noise, n_samples, sigma_activation, last_delta, v_colors, v_opacities, v_depths, v_sigmas))]
#[allow(clippy::too_many_arguments)]
pub fn render_distribution_backward<'py>(
    py: Python<'py>,
    coeffs: Any<'py>,
    taus: Any<'py>,
    near: Any<'py>,
    far: Any<'py>,
    noise: Option<Any<'py>>,
    n_samples: usize,
    sigma_activation: &str,
    last_delta: f64,
    v_colors: Option<Any<'py>>,
    v_opacities: Option<Any<'py>>,
    v_depths: Option<Any<'py>>,
    v_sigmas: Option<Any<'py>>,
) -> PyResult<Any<'py>> {
    let act = activation(sigma_activation)?;
    with_float!(float_dtype(&coeffs, "coeffs")?, T => {
        let (ca, ta) = (borrow::<T>(&coeffs, "coeffs")?, borrow::<T>(&taus, "taus")?);
        let (na, fa) = (borrow::<T>(&near, "near")?, borrow::<T>(&far, "far")?);
        let za = borrow_opt::<T>(&noise, "noise")?;
        let gc = borrow_opt::<T>(&v_colors, "v_colors")?;
        let go = borrow_opt::<T>(&v_opacities, "v_opacities")?;
        let gd = borrow_opt::<T>(&v_depths, "v_depths")?;
        let gs = borrow_opt::<T>(&v_sigmas, "v_sigmas")?;
        let d = Distribution {
            coeffs: slice(&ca, "coeffs")?,
            taus: slice(&ta, "taus")?,
            near: slice(&na, "near")?,
            far: slice(&fa, "far")?,
            noise: za.as_ref().map(|z| slice(z, "noise")).transpose()?,
            n_samples,
            activation: act,
            last_delta: last_delta as T,
        };
        let g = OutputGrads {
            colors: gc.as_ref().map(|v| slice(v, "v_colors")).transpose()?,
            opacities: go.as_ref().map(|v| slice(v, "v_opacities")).transpose()?,
            depths: gd.as_ref().map(|v| slice(v, "v_depths")).transpose()?,
            sigmas: gs.as_ref().map(|v| slice(v, "v_sigmas")).transpose()?,
        };
        Ok(out_any(py, detached(py, || distribution::render_distribution_backward(&d, &g))?))
    })
}
