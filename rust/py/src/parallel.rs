//! Thread-pool control and fork safety.

use pyo3::prelude::*;

use crate::convert::to_py;

/// Sets the number of threads raysplat's kernels use.
#[pyfunction]
pub fn set_num_threads(n: usize) -> PyResult<()> {
    raysplat_core::parallel::set_num_threads(n).map_err(to_py)
}

/// The number of threads raysplat's kernels use.
#[pyfunction]
pub fn get_num_threads() -> usize {
    raysplat_core::parallel::num_threads()
}

extern "C" fn after_fork_in_child() {
    raysplat_core::parallel::forget_after_fork();
}

/// Registers the `fork()` child handler once, so forked workers (e.g. torch DataLoader) rebuild
/// the pool instead of waiting on threads that do not exist in the child.
pub fn install_fork_guard() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: registering a plain function pointer; the handler only touches a lock-free
        // path (`try_write`) and leaks the stale pool.
        unsafe {
            libc::pthread_atfork(None, None, Some(after_fork_in_child));
        }
    });
}
