"""raysplat: Rust-accelerated neural rendering and 3D sampling for PyTorch.

CPU tensors run on raysplat's Rust kernels; tensors on other devices run the pure-torch twins
in :mod:`raysplat.reference` (same results).
"""

from raysplat import _core, datasets, gs, nerdf, nerf
from raysplat._checks import backend
from raysplat.distribution import render_distribution
from raysplat.grid import OccupancyGrid
from raysplat.knn import knn, knn_scale_init
from raysplat.mesh import MeshRaster, rasterize_mesh, sample_texture
from raysplat.rays import generate_rays, ndc_rays, ray_aabb_intersect
from raysplat.sampling import importance_sampling, interlevel_loss, inverse_cdf, stratified_samples
from raysplat.scan import exclusive_prod, exclusive_sum, inclusive_prod, inclusive_sum, pack_info
from raysplat.splat import rasterization
from raysplat.volrend import (
    accumulate_along_rays,
    render_weight_from_alpha,
    render_weight_from_density,
    volume_render,
)

__version__: str = _core.__version__


def set_num_threads(n: int) -> None:
    """Sets how many threads the Rust kernels use (default: ``RAYSPLAT_NUM_THREADS`` or all cores)."""
    _core.set_num_threads(n)


def get_num_threads() -> int:
    """The number of threads the Rust kernels use."""
    return _core.get_num_threads()


def set_buffer_cache_limit(megabytes: float) -> None:
    """Caps the memory kept for reuse by the Rust kernels' output buffers (default 512 MB or
    ``RAYSPLAT_BUFFER_CACHE_MB``; 0 disables the cache). Freed outputs of at least 1 MB are
    recycled for later calls of the same size, which avoids page-faulting fresh memory."""
    if not megabytes >= 0:
        raise ValueError(f"megabytes must be >= 0, got {megabytes}")
    _core.set_buffer_cache_budget(int(megabytes * (1 << 20)))


def empty_buffer_cache() -> None:
    """Returns every cached output buffer to the system."""
    _core.release_buffer_cache()


def buffer_cache_info() -> dict[str, int]:
    """``{"cached_bytes": ..., "limit_bytes": ...}`` of the output-buffer cache."""
    cached, limit = _core.buffer_cache_info()
    return {"cached_bytes": cached, "limit_bytes": limit}


__all__ = [
    "MeshRaster",
    "OccupancyGrid",
    "__version__",
    "accumulate_along_rays",
    "backend",
    "buffer_cache_info",
    "datasets",
    "empty_buffer_cache",
    "exclusive_prod",
    "exclusive_sum",
    "generate_rays",
    "get_num_threads",
    "gs",
    "importance_sampling",
    "inclusive_prod",
    "inclusive_sum",
    "interlevel_loss",
    "knn",
    "knn_scale_init",
    "inverse_cdf",
    "ndc_rays",
    "nerdf",
    "nerf",
    "pack_info",
    "rasterization",
    "rasterize_mesh",
    "render_distribution",
    "ray_aabb_intersect",
    "render_weight_from_alpha",
    "render_weight_from_density",
    "sample_texture",
    "set_buffer_cache_limit",
    "set_num_threads",
    "stratified_samples",
    "volume_render",
]
