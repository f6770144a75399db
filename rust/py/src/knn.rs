//! Bindings of `raysplat_core::knn`.

use pyo3::prelude::*;
use raysplat_core::knn as core_knn;

use crate::convert::{detached, opt_slice, out, slice, In, Out};

/// Exact k nearest neighbours of 3-D points: flat `(distances, indices)` of shape `[m * k]`.
#[pyfunction]
#[pyo3(signature = (points, k, queries=None, exclude_self=false))]
pub fn knn<'py>(
    py: Python<'py>,
    points: In<'py, f32>,
    k: usize,
    queries: Option<In<'py, f32>>,
    exclude_self: bool,
) -> PyResult<(Out<'py, f32>, Out<'py, i64>)> {
    let (p, q) = (slice(&points, "points")?, opt_slice(&queries, "queries")?);
    let r = detached(py, || core_knn::knn(p, q, k, exclude_self))?;
    Ok((out(py, r.distances), out(py, r.indices)))
}
