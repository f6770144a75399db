//! Bindings of `raysplat_core::{scan, segments}`: segment offsets of packed samples and
//! segmented scans with their backward.
//!
//! Samples are either dense (`offsets=None`: `n_rays` equal segments) or packed, described by
//! `offsets` (`[n_rays + 1]`, from `segment_offsets`), computed once per forward pass. Float
//! arguments may be float32 or float64 (for gradient checks), all of the same dtype.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use raysplat_core::scan::ScanOp;
use raysplat_core::Segments;

use crate::convert::{
    borrow, detached, float_dtype, opt_slice, out, out_any, slice, to_py, with_float, Any, In, Out,
};

/// The segments of `n_samples` samples: packed by `offsets`, or dense (`n_rays` equal ones).
pub(crate) fn segments(
    offsets: Option<&[i64]>,
    n_rays: usize,
    n_samples: usize,
) -> PyResult<Segments> {
    match offsets {
        Some(o) => Segments::from_offsets(o, n_samples).map_err(to_py),
        None if n_rays == 0 && n_samples == 0 => Ok(Segments::uniform(0, 0)),
        None if n_rays > 0 && n_samples % n_rays == 0 => {
            Ok(Segments::uniform(n_rays, n_samples / n_rays))
        }
        None => Err(PyValueError::new_err(format!(
            "dense samples: {n_samples} samples cannot be split evenly over {n_rays} rays"
        ))),
    }
}

fn scan_op(op: &str) -> PyResult<ScanOp> {
    match op {
        "sum" => Ok(ScanOp::Sum),
        "prod" => Ok(ScanOp::Prod),
        other => Err(PyValueError::new_err(format!(
            "op: expected 'sum' or 'prod', got {other:?}"
        ))),
    }
}

/// Segment offsets `[n_rays + 1]` of sorted `ray_indices` (errors if out of range, and if
/// unsorted unless `allow_unsorted`, which returns `None` for unsorted indices instead).
#[pyfunction]
#[pyo3(signature = (ray_indices, n_rays, allow_unsorted=false))]
pub fn segment_offsets<'py>(
    py: Python<'py>,
    ray_indices: In<'py, i64>,
    n_rays: usize,
    allow_unsorted: bool,
) -> PyResult<Option<Out<'py, i64>>> {
    let ri = slice(&ray_indices, "ray_indices")?;
    let segs = detached(py, || {
        if allow_unsorted {
            Segments::from_ray_indices_if_sorted(ri, n_rays)
        } else {
            Segments::from_ray_indices(ri, n_rays).map(Some)
        }
    })?;
    Ok(segs.map(|s| out(py, s.offsets().iter().map(|&o| o as i64).collect())))
}

/// Segmented inclusive / exclusive sum or product.
#[pyfunction]
pub fn scan<'py>(
    py: Python<'py>,
    inputs: Any<'py>,
    offsets: Option<In<'py, i64>>,
    n_rays: usize,
    op: &str,
    exclusive: bool,
) -> PyResult<Any<'py>> {
    let op = scan_op(op)?;
    let offsets = opt_slice(&offsets, "offsets")?;
    with_float!(float_dtype(&inputs, "inputs")?, T => {
        let xa = borrow::<T>(&inputs, "inputs")?;
        let x = slice(&xa, "inputs")?;
        let segs = segments(offsets, n_rays, x.len())?;
        Ok(out_any(py, detached(py, || raysplat_core::scan::scan(x, &segs, op, exclusive))?))
    })
}

/// Gradient of `scan` w.r.t. its inputs, given `v_outputs`.
#[pyfunction]
pub fn scan_backward<'py>(
    py: Python<'py>,
    inputs: Any<'py>,
    v_outputs: Any<'py>,
    offsets: Option<In<'py, i64>>,
    n_rays: usize,
    op: &str,
    exclusive: bool,
) -> PyResult<Any<'py>> {
    let op = scan_op(op)?;
    let offsets = opt_slice(&offsets, "offsets")?;
    with_float!(float_dtype(&inputs, "inputs")?, T => {
        let (xa, ga) = (borrow::<T>(&inputs, "inputs")?, borrow::<T>(&v_outputs, "v_outputs")?);
        let (x, g) = (slice(&xa, "inputs")?, slice(&ga, "v_outputs")?);
        let segs = segments(offsets, n_rays, x.len())?;
        Ok(out_any(py, detached(py, || raysplat_core::scan::scan_backward(x, g, &segs, op, exclusive))?))
    })
}
