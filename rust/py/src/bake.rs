//! Bindings of `raysplat_core::bake` (texture baking and dilation).
//!
//! Float arguments are float32 or float64 (for gradient checks), all of one dtype.

use pyo3::prelude::*;
use raysplat_core::bake::{self as core_bake, BakeRequest};

use crate::convert::{borrow, detached, float_dtype, out, out_any, slice, with_float, Any, In};

/// `(texture [H*W*C], texel_weight [H*W])` of pixels `colors [P*C]` at `uv [P*2]` with
/// `weights [P]` splatted bilinearly into an `height x width x channels` texture.
#[pyfunction]
#[pyo3(signature = (colors, uv, weights, channels, height, width))]
pub fn bake<'py>(
    py: Python<'py>,
    colors: Any<'py>,
    uv: Any<'py>,
    weights: Any<'py>,
    channels: usize,
    height: usize,
    width: usize,
) -> PyResult<(Any<'py>, Any<'py>)> {
    with_float!(float_dtype(&colors, "colors")?, T => {
        let (ca, ua, wa) = (
            borrow::<T>(&colors, "colors")?,
            borrow::<T>(&uv, "uv")?,
            borrow::<T>(&weights, "weights")?,
        );
        let req = BakeRequest {
            colors: slice(&ca, "colors")?,
            uv: slice(&ua, "uv")?,
            weights: slice(&wa, "weights")?,
            channels,
            height,
            width,
        };
        let r = detached(py, || core_bake::bake(&req))?;
        Ok((out_any(py, r.texture), out_any(py, r.texel_weight)))
    })
}

/// `(texture [H*W*C], filled [H*W], passes)`: unfilled texels of `texture` take the mean of
/// their filled 8-neighbours, one ring per pass, for at most `max_passes` passes.
#[pyfunction]
#[pyo3(signature = (texture, filled, height, width, channels, max_passes))]
pub fn dilate<'py>(
    py: Python<'py>,
    texture: Any<'py>,
    filled: In<'py, bool>,
    height: usize,
    width: usize,
    channels: usize,
    max_passes: usize,
) -> PyResult<(Any<'py>, Bound<'py, numpy::PyArray1<bool>>, usize)> {
    let mask = slice(&filled, "filled")?;
    with_float!(float_dtype(&texture, "texture")?, T => {
        let ta = borrow::<T>(&texture, "texture")?;
        let tex = slice(&ta, "texture")?;
        let r = detached(py, || core_bake::dilate(tex, mask, height, width, channels, max_passes))?;
        Ok((out_any(py, r.texture), out(py, r.filled), r.passes))
    })
}
