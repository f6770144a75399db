//! `raysplat._core`: thin PyO3 bindings over `raysplat-core`.
//!
//! Each function borrows contiguous NumPy arrays (shared with the caller's torch tensors without
//! copying), releases the GIL while the Rust kernel runs, moves the result `Vec` into a new 1-D
//! NumPy array, and turns every core error into a Python `ValueError`. The Python package
//! reshapes outputs and wraps the `*_backward` functions into autograd.

mod bake;
mod buffer_cache;
mod convert;
mod distribution;
mod grid;
mod hashgrid;
mod isa;
mod knn;
mod mesh;
mod parallel;
mod projection;
mod rays;
mod sampling;
mod scan;
mod splat;
mod volrend;

use pyo3::prelude::*;

/// Output buffers are recycled across calls (see `raysplat_core::buffer_cache`).
#[global_allocator]
static ALLOC: raysplat_core::buffer_cache::CachingAlloc = raysplat_core::buffer_cache::CachingAlloc;

#[pymodule]
mod _core {
    use super::*;

    #[pymodule_export]
    use crate::parallel::{get_num_threads, set_num_threads};

    #[pymodule_export]
    use crate::isa::simd_level;

    #[pymodule_export]
    use crate::buffer_cache::{buffer_cache_info, release_buffer_cache, set_buffer_cache_budget};

    #[pymodule_export]
    use crate::rays::{generate_rays, ndc_rays, ray_aabb_intersect};

    #[pymodule_export]
    use crate::sampling::{
        importance_sampling, inverse_cdf, outer_measure, outer_measure_backward, stratified_edges,
    };

    #[pymodule_export]
    use crate::scan::{scan, scan_backward, segment_offsets};

    #[pymodule_export]
    use crate::volrend::{
        accumulate, accumulate_backward, render, render_backward, weights_from_alpha,
        weights_from_alpha_backward, weights_from_density, weights_from_density_backward,
        weights_from_intervals, weights_from_intervals_backward,
    };

    #[pymodule_export]
    use crate::distribution::{render_distribution, render_distribution_backward};

    #[pymodule_export]
    use crate::grid::march;

    #[pymodule_export]
    use crate::hashgrid::{hashgrid_backward, hashgrid_backward_x, hashgrid_forward};

    #[pymodule_export]
    use crate::knn::knn;

    #[pymodule_export]
    use crate::projection::{project_to_views, project_to_views_backward};

    #[pymodule_export]
    use crate::mesh::rasterize_mesh;

    #[pymodule_export]
    use crate::bake::{bake, dilate};

    #[pymodule_export]
    use crate::splat::{
        splat_project, splat_project_backward, splat_rasterize, splat_rasterize_backward, splat_sh,
        splat_sh_backward,
    };

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        crate::parallel::install_fork_guard();
        crate::buffer_cache::budget_from_env();
        Ok(())
    }
}
