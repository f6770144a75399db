//! The buffer cache behind every output array (see `raysplat_core::buffer_cache`).

use pyo3::prelude::*;

/// Sets the most bytes of freed output buffers kept for reuse (0 disables the cache).
#[pyfunction]
pub fn set_buffer_cache_budget(bytes: usize) {
    raysplat_core::buffer_cache::set_budget(bytes);
}

/// `(cached_bytes, budget_bytes)` of the buffer cache.
#[pyfunction]
pub fn buffer_cache_info() -> (usize, usize) {
    (
        raysplat_core::buffer_cache::cached_bytes(),
        raysplat_core::buffer_cache::budget(),
    )
}

/// Returns every cached buffer to the system.
#[pyfunction]
pub fn release_buffer_cache() {
    raysplat_core::buffer_cache::release();
}

/// Applies `RAYSPLAT_BUFFER_CACHE_MB` when set to a number.
pub fn budget_from_env() {
    if let Some(mb) = std::env::var("RAYSPLAT_BUFFER_CACHE_MB")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        raysplat_core::buffer_cache::set_budget(mb.saturating_mul(1 << 20));
    }
}
