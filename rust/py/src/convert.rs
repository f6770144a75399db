//! Array borrowing, error conversion and the detach helper shared by all bindings.

use numpy::{
    Element, IntoPyArray, PyArray1, PyArrayDescrMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// A borrowed, contiguous, read-only array argument.
pub type In<'py, T> = PyReadonlyArrayDyn<'py, T>;
/// A 1-D array result.
pub type Out<'py, T> = Bound<'py, PyArray1<T>>;

/// The contiguous data of argument `name`, or a `ValueError` naming it.
pub fn slice<'a, T: Element>(arr: &'a In<'_, T>, name: &str) -> PyResult<&'a [T]> {
    arr.as_slice().map_err(|_| {
        PyValueError::new_err(format!(
            "{name}: must be a C-contiguous array, got strides {:?}",
            arr.strides()
        ))
    })
}

/// Like [`slice`] for an optional argument.
pub fn opt_slice<'a, T: Element>(
    arr: &'a Option<In<'_, T>>,
    name: &str,
) -> PyResult<Option<&'a [T]>> {
    arr.as_ref().map(|a| slice(a, name)).transpose()
}

/// Converts a core error into `ValueError`.
pub fn to_py(err: raysplat_core::Error) -> PyErr {
    PyValueError::new_err(err.to_string())
}

/// Runs `f` with the GIL released and converts its error.
pub fn detached<T: Send>(
    py: Python<'_>,
    f: impl FnOnce() -> raysplat_core::Result<T> + Send,
) -> PyResult<T> {
    py.detach(f).map_err(to_py)
}

/// Moves a vector into a new NumPy array (no copy).
pub fn out<T: Element>(py: Python<'_>, v: Vec<T>) -> Out<'_, T> {
    v.into_pyarray(py)
}

/// A Python object holding any array-like argument.
pub type Any<'py> = Bound<'py, pyo3::PyAny>;

/// Floating dtype of a differentiable kernel's arguments.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Float {
    /// float32
    F32,
    /// float64
    F64,
}

/// The float dtype of array `obj` (argument `name`), or a `TypeError`.
pub fn float_dtype(obj: &Any<'_>, name: &str) -> PyResult<Float> {
    let arr = obj.cast::<numpy::PyUntypedArray>().map_err(|_| {
        pyo3::exceptions::PyTypeError::new_err(format!("{name}: expected a NumPy array"))
    })?;
    let dt = arr.dtype();
    let py = obj.py();
    if dt.is_equiv_to(&numpy::dtype::<f32>(py)) {
        Ok(Float::F32)
    } else if dt.is_equiv_to(&numpy::dtype::<f64>(py)) {
        Ok(Float::F64)
    } else {
        Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "{name}: expected float32 or float64, got {dt}"
        )))
    }
}

/// Borrows `obj` as an array of element type `T` (argument `name`).
pub fn borrow<'py, T: Element>(obj: &Any<'py>, name: &str) -> PyResult<In<'py, T>> {
    obj.extract::<In<'py, T>>().map_err(|_| {
        pyo3::exceptions::PyTypeError::new_err(format!(
            "{name}: expected a {} array like the other float inputs",
            std::any::type_name::<T>()
        ))
    })
}

/// Borrows an optional argument.
pub fn borrow_opt<'py, T: Element>(
    obj: &Option<Any<'py>>,
    name: &str,
) -> PyResult<Option<In<'py, T>>> {
    obj.as_ref().map(|o| borrow(o, name)).transpose()
}

/// Moves a vector into a NumPy array returned as a plain Python object.
pub fn out_any<T: Element>(py: Python<'_>, v: Vec<T>) -> Any<'_> {
    v.into_pyarray(py).into_any()
}

/// Calls `$body` with `$t` bound to `f32` or `f64` according to `$dtype`.
macro_rules! with_float {
    ($dtype:expr, $t:ident => $body:expr) => {
        match $dtype {
            $crate::convert::Float::F32 => {
                type $t = f32;
                $body
            }
            $crate::convert::Float::F64 => {
                type $t = f64;
                $body
            }
        }
    };
}
pub(crate) use with_float;

/// Parses a camera convention argument (`"opengl"` or `"opencv"`).
pub fn convention(name: &str) -> PyResult<raysplat_core::rays::Convention> {
    match name {
        "opengl" => Ok(raysplat_core::rays::Convention::OpenGl),
        "opencv" => Ok(raysplat_core::rays::Convention::OpenCv),
        other => Err(PyValueError::new_err(format!(
            "convention: expected 'opengl' or 'opencv', got {other:?}"
        ))),
    }
}
