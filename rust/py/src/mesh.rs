//! Bindings of `raysplat_core::mesh`.

use pyo3::prelude::*;
use raysplat_core::mesh::{self, MeshRequest};

use crate::convert::{detached, out, slice, In, Out};

/// Mesh rasterization: flat `(triangle_id [H*W], barycentrics [H*W*3], depth [H*W])`.
#[pyfunction]
#[pyo3(signature = (vertices, faces, viewmat, intrinsics, width, height, convention, near=mesh::DEFAULT_NEAR))]
#[allow(clippy::too_many_arguments)]
pub fn rasterize_mesh<'py>(
    py: Python<'py>,
    vertices: In<'py, f32>,
    faces: In<'py, i64>,
    viewmat: In<'py, f32>,
    intrinsics: In<'py, f32>,
    width: usize,
    height: usize,
    convention: &str,
    near: f32,
) -> PyResult<(Out<'py, i64>, Out<'py, f32>, Out<'py, f32>)> {
    let convention = crate::convert::convention(convention)?;
    let req = MeshRequest {
        vertices: slice(&vertices, "vertices")?,
        faces: slice(&faces, "faces")?,
        viewmat: slice(&viewmat, "viewmat")?,
        intrinsics: slice(&intrinsics, "K")?,
        width,
        height,
        convention,
        near,
    };
    let r = detached(py, || mesh::rasterize_mesh(&req))?;
    Ok((
        out(py, r.triangle_id),
        out(py, r.barycentrics),
        out(py, r.depth),
    ))
}
