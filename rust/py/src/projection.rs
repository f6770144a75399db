//! Bindings of `raysplat_core::projection`: float32 or float64 points / cameras / images (one
//! dtype for all), int64 view ids; gradients of outputs are named `v_<output>`.

use pyo3::prelude::*;
use raysplat_core::projection::{self, Projection};

use crate::convert::{borrow, detached, float_dtype, out, out_any, slice, with_float, Any, In};

/// Shape `(n_rays, n_points, n_views, n_cams, height, width, channels)` of a projection call.
type Dims = (usize, usize, usize, usize, usize, usize, usize);

/// Samples `[R*N*V*C]` and validity `[R*N*V]` of points projected into reference views.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub fn project_to_views<'py>(
    py: Python<'py>,
    points: Any<'py>,
    view_ids: In<'py, i64>,
    c2w: Any<'py>,
    intrinsics: Any<'py>,
    images: Any<'py>,
    dims: Dims,
) -> PyResult<(Any<'py>, Bound<'py, numpy::PyArray1<bool>>)> {
    let (n_rays, n_points, n_views, n_cams, height, width, channels) = dims;
    with_float!(float_dtype(&points, "points")?, T => {
        let (pa, ca) = (borrow::<T>(&points, "points")?, borrow::<T>(&c2w, "c2w")?);
        let (ka, ia) = (borrow::<T>(&intrinsics, "K")?, borrow::<T>(&images, "images")?);
        let p = Projection {
            points: slice(&pa, "points")?,
            view_ids: slice(&view_ids, "view_ids")?,
            c2w: slice(&ca, "c2w")?,
            intrinsics: slice(&ka, "K")?,
            images: slice(&ia, "images")?,
            n_rays, n_points, n_views, n_cams, height, width, channels,
        };
        let (s, ok) = detached(py, || projection::project_to_views(&p))?;
        Ok((out_any(py, s), out(py, ok)))
    })
}

/// Gradients `(v_points, v_images)` (each `None` unless asked for) of `project_to_views`.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub fn project_to_views_backward<'py>(
    py: Python<'py>,
    points: Any<'py>,
    view_ids: In<'py, i64>,
    c2w: Any<'py>,
    intrinsics: Any<'py>,
    images: Any<'py>,
    dims: Dims,
    v_samples: Any<'py>,
    need_points: bool,
    need_images: bool,
) -> PyResult<(Option<Any<'py>>, Option<Any<'py>>)> {
    let (n_rays, n_points, n_views, n_cams, height, width, channels) = dims;
    with_float!(float_dtype(&points, "points")?, T => {
        let (pa, ca) = (borrow::<T>(&points, "points")?, borrow::<T>(&c2w, "c2w")?);
        let (ka, ia) = (borrow::<T>(&intrinsics, "K")?, borrow::<T>(&images, "images")?);
        let ga = borrow::<T>(&v_samples, "v_samples")?;
        let g = slice(&ga, "v_samples")?;
        let p = Projection {
            points: slice(&pa, "points")?,
            view_ids: slice(&view_ids, "view_ids")?,
            c2w: slice(&ca, "c2w")?,
            intrinsics: slice(&ka, "K")?,
            images: slice(&ia, "images")?,
            n_rays, n_points, n_views, n_cams, height, width, channels,
        };
        let (gp, gi) = detached(py, || {
            projection::project_to_views_backward(&p, g, need_points, need_images)
        })?;
        Ok((gp.map(|x| out_any(py, x)), gi.map(|x| out_any(py, x))))
    })
}
