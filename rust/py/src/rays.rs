//! Bindings of `raysplat_core::rays`.

use pyo3::prelude::*;
use raysplat_core::rays::{self, RayRequest};

use crate::convert::{detached, opt_slice, out, slice, In, Out};

/// Pinhole rays for every pixel (or the flat `pixels` subset); returns flat origins, directions.
#[pyfunction]
#[pyo3(signature = (c2w, intrinsics, n_cams, width, height, convention, pixels=None, offsets=None, normalize=true))]
#[allow(clippy::too_many_arguments)]
pub fn generate_rays<'py>(
    py: Python<'py>,
    c2w: In<'py, f32>,
    intrinsics: In<'py, f32>,
    n_cams: usize,
    width: usize,
    height: usize,
    convention: &str,
    pixels: Option<In<'py, i64>>,
    offsets: Option<In<'py, f32>>,
    normalize: bool,
) -> PyResult<(Out<'py, f32>, Out<'py, f32>)> {
    let convention = crate::convert::convention(convention)?;
    let req = RayRequest {
        c2w: slice(&c2w, "c2w")?,
        intrinsics: slice(&intrinsics, "K")?,
        n_cams,
        width,
        height,
        convention,
        pixels: opt_slice(&pixels, "pixels")?,
        offsets: opt_slice(&offsets, "offsets")?,
        normalize,
    };
    let r = detached(py, || rays::generate_rays(&req))?;
    Ok((out(py, r.origins), out(py, r.directions)))
}

/// LLFF normalized-device-coordinate rays.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub fn ndc_rays<'py>(
    py: Python<'py>,
    origins: In<'py, f32>,
    directions: In<'py, f32>,
    fx: f32,
    fy: f32,
    width: f32,
    height: f32,
    near: f32,
) -> PyResult<(Out<'py, f32>, Out<'py, f32>)> {
    let (o, d) = (
        slice(&origins, "origins")?,
        slice(&directions, "directions")?,
    );
    let r = detached(py, || rays::ndc_rays(o, d, (fx, fy), width, height, near))?;
    Ok((out(py, r.origins), out(py, r.directions)))
}

/// Ray-box slab intersection: flat `t_near`, `t_far`, `hit` of shape `[n_rays * n_boxes]`.
#[pyfunction]
pub fn ray_aabb_intersect<'py>(
    py: Python<'py>,
    origins: In<'py, f32>,
    directions: In<'py, f32>,
    aabbs: In<'py, f32>,
) -> PyResult<(Out<'py, f32>, Out<'py, f32>, Out<'py, bool>)> {
    let (o, d, b) = (
        slice(&origins, "origins")?,
        slice(&directions, "directions")?,
        slice(&aabbs, "aabb")?,
    );
    let h = detached(py, || rays::ray_aabb_intersect(o, d, b))?;
    Ok((out(py, h.t_near), out(py, h.t_far), out(py, h.hit)))
}
