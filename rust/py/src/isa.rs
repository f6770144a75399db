//! Which instruction-set build of the vectorised per-ray loops runs (see `raysplat_core::isa`).

use pyo3::prelude::*;

/// `"avx2"` when the AVX2 builds run (x86-64 CPU with AVX2, `RAYSPLAT_NO_AVX2` unset), else
/// `"baseline"` (the x86-64-v2 / portable build).
#[pyfunction]
pub fn simd_level() -> &'static str {
    if raysplat_core::isa::avx2() {
        "avx2"
    } else {
        "baseline"
    }
}
