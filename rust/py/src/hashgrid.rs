//! Bindings of `raysplat_core::hashgrid` (float32 or float64, `x` and `table` of one dtype).

use pyo3::prelude::*;
use raysplat_core::hashgrid::HashGrid;

use crate::convert::{borrow, detached, float_dtype, out_any, slice, to_py, with_float, Any};

/// Hash-grid encoding `[N * L * n_feat]` of points `x` `[N * 3]` with `table` `[L * T * n_feat]`.
#[pyfunction]
pub fn hashgrid_forward<'py>(
    py: Python<'py>,
    x: Any<'py>,
    table: Any<'py>,
    resolutions: Vec<u32>,
    table_size: usize,
    n_feat: usize,
) -> PyResult<Any<'py>> {
    let g = HashGrid::new(resolutions, table_size, n_feat).map_err(to_py)?;
    with_float!(float_dtype(&x, "x")?, T => {
        let (xa, ta) = (borrow::<T>(&x, "x")?, borrow::<T>(&table, "table")?);
        let (xs, ts) = (slice(&xa, "x")?, slice(&ta, "table")?);
        Ok(out_any(py, detached(py, || g.forward(xs, ts))?))
    })
}

/// Gradient `[L * T * n_feat]` of `hashgrid_forward` w.r.t. the table.
#[pyfunction]
pub fn hashgrid_backward<'py>(
    py: Python<'py>,
    x: Any<'py>,
    v_out: Any<'py>,
    resolutions: Vec<u32>,
    table_size: usize,
    n_feat: usize,
) -> PyResult<Any<'py>> {
    let g = HashGrid::new(resolutions, table_size, n_feat).map_err(to_py)?;
    with_float!(float_dtype(&x, "x")?, T => {
        let (xa, ga) = (borrow::<T>(&x, "x")?, borrow::<T>(&v_out, "v_out")?);
        let (xs, gs) = (slice(&xa, "x")?, slice(&ga, "v_out")?);
        Ok(out_any(py, detached(py, || g.backward(xs, gs))?))
    })
}

/// Gradient `[N * 3]` of `hashgrid_forward` w.r.t. the points `x`.
#[pyfunction]
pub fn hashgrid_backward_x<'py>(
    py: Python<'py>,
    x: Any<'py>,
    table: Any<'py>,
    v_out: Any<'py>,
    resolutions: Vec<u32>,
    table_size: usize,
    n_feat: usize,
) -> PyResult<Any<'py>> {
    let g = HashGrid::new(resolutions, table_size, n_feat).map_err(to_py)?;
    with_float!(float_dtype(&x, "x")?, T => {
        let (xa, ta, ga) = (borrow::<T>(&x, "x")?, borrow::<T>(&table, "table")?, borrow::<T>(&v_out, "v_out")?);
        let (xs, ts, gs) = (slice(&xa, "x")?, slice(&ta, "table")?, slice(&ga, "v_out")?);
        Ok(out_any(py, detached(py, || g.backward_x(xs, ts, gs))?))
    })
}
