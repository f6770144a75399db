"""raysplat: Rust-accelerated neural rendering and 3D sampling for PyTorch.

CPU tensors run on raysplat's Rust kernels; CUDA tensors on nerfacc / gsplat kernels when those
load (:func:`peer_status`), else, like tensors on other devices, on the pure-torch twins in
:mod:`raysplat.reference` (same results).
"""

from raysplat import _core, datasets, gs, nerdf, nerf, stitch
from raysplat._checks import backend
from raysplat._peers import PeerFallbackWarning
from raysplat._peers import status as peer_status
from raysplat.bake import bake, fill_holes, render_texture, view_weights
from raysplat.buffer_cache import buffer_cache_info, empty_buffer_cache, set_buffer_cache_limit
from raysplat.distribution import render_distribution
from raysplat.grid import OccupancyGrid
from raysplat.hashgrid import hashgrid_encode
from raysplat.knn import knn, knn_scale_init
from raysplat.mesh import MeshRaster, rasterize_mesh, sample_texture
from raysplat.parallel import get_num_threads, set_num_threads
from raysplat.projection import nearest_views, project_to_views
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


__all__ = [
    "MeshRaster",
    "OccupancyGrid",
    "PeerFallbackWarning",
    "__version__",
    "accumulate_along_rays",
    "backend",
    "bake",
    "buffer_cache_info",
    "datasets",
    "empty_buffer_cache",
    "exclusive_prod",
    "exclusive_sum",
    "fill_holes",
    "generate_rays",
    "get_num_threads",
    "gs",
    "hashgrid_encode",
    "importance_sampling",
    "inclusive_prod",
    "inclusive_sum",
    "interlevel_loss",
    "knn",
    "knn_scale_init",
    "inverse_cdf",
    "ndc_rays",
    "nearest_views",
    "nerdf",
    "nerf",
    "pack_info",
    "peer_status",
    "project_to_views",
    "rasterization",
    "rasterize_mesh",
    "render_distribution",
    "render_texture",
    "ray_aabb_intersect",
    "render_weight_from_alpha",
    "render_weight_from_density",
    "sample_texture",
    "set_buffer_cache_limit",
    "set_num_threads",
    "stitch",
    "stratified_samples",
    "view_weights",
    "volume_render",
]
