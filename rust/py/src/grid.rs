//! Bindings of `raysplat_core::grid`.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use raysplat_core::grid::{self, GridSpec, MarchParams};

use crate::convert::{detached, opt_slice, out, slice, In, Out};

/// Occupancy-grid ray marching: packed `(ray_indices, t_starts, t_ends)`.
#[pyfunction]
#[pyo3(signature = (origins, directions, near, far, binaries, aabb, resolution, levels, step, cone_angle, jitter=None))]
#[allow(clippy::too_many_arguments)]
pub fn march<'py>(
    py: Python<'py>,
    origins: In<'py, f32>,
    directions: In<'py, f32>,
    near: In<'py, f32>,
    far: In<'py, f32>,
    binaries: In<'py, bool>,
    aabb: [f32; 6],
    resolution: [usize; 3],
    levels: usize,
    step: f32,
    cone_angle: f32,
    jitter: Option<In<'py, f32>>,
) -> PyResult<(Out<'py, i64>, Out<'py, f32>, Out<'py, f32>)> {
    if levels > 16 {
        return Err(PyValueError::new_err(
            "levels: at most 16 cascade levels are supported",
        ));
    }
    let spec = GridSpec {
        aabb,
        resolution,
        levels,
    };
    let (o, d) = (
        slice(&origins, "origins")?,
        slice(&directions, "directions")?,
    );
    let (n, f) = (slice(&near, "near")?, slice(&far, "far")?);
    let (b, j) = (slice(&binaries, "binaries")?, opt_slice(&jitter, "jitter")?);
    let params = MarchParams { step, cone_angle };
    let m = detached(py, || grid::march(o, d, n, f, b, &spec, params, j))?;
    Ok((
        out(py, m.ray_indices),
        out(py, m.t_starts),
        out(py, m.t_ends),
    ))
}
