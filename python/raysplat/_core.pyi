# Type stubs for the native module raysplat._core (rust/py). Hand-written; keep in sync.
# Float arguments of differentiable kernels accept float32 or float64 (all the same dtype);
# every result is a new 1-D array that the Python layer reshapes. Gradients passed to a
# `*_backward` are named `v_<output>` (gsplat's convention).

import numpy as np
from numpy.typing import NDArray

F32 = NDArray[np.float32]
Float = NDArray[np.float32] | NDArray[np.float64]
I64 = NDArray[np.int64]

__version__: str

def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...
def simd_level() -> str: ...
def set_buffer_cache_budget(bytes: int) -> None: ...
def buffer_cache_info() -> tuple[int, int]: ...
def release_buffer_cache() -> None: ...
def generate_rays(
    c2w: F32,
    intrinsics: F32,
    n_cams: int,
    width: int,
    height: int,
    convention: str,
    pixels: I64 | None = None,
    offsets: F32 | None = None,
    normalize: bool = True,
) -> tuple[F32, F32]: ...
def ndc_rays(
    origins: F32, directions: F32, fx: float, fy: float, width: float, height: float, near: float
) -> tuple[F32, F32]: ...
def ray_aabb_intersect(origins: F32, directions: F32, aabbs: F32) -> tuple[F32, F32, NDArray[np.bool_]]: ...
def stratified_edges(
    t_near: F32, t_far: F32, n_samples: int, spacing: str, jitter: F32 | None = None
) -> F32: ...
def inverse_cdf(t_edges: F32, weights: F32, n_rays: int, u: F32) -> F32: ...
def importance_sampling(
    t_edges: F32, weights: F32, n_rays: int, n_samples: int, jitter: F32 | None = None
) -> F32: ...
def outer_measure(t_edges_prop: Float, weights_prop: Float, t_edges: Float, n_rays: int) -> Float: ...
def outer_measure_backward(
    t_edges_prop: Float, weights_prop: Float, t_edges: Float, n_rays: int, v_outer: Float
) -> Float: ...
def segment_offsets(ray_indices: I64, n_rays: int, allow_unsorted: bool = False) -> I64 | None: ...
def scan(inputs: Float, offsets: I64 | None, n_rays: int, op: str, exclusive: bool) -> Float: ...
def scan_backward(
    inputs: Float, v_outputs: Float, offsets: I64 | None, n_rays: int, op: str, exclusive: bool
) -> Float: ...
def weights_from_density(sigma_dt: Float, offsets: I64 | None, n_rays: int) -> tuple[Float, Float, Float]: ...
def weights_from_intervals(
    t_starts: Float, t_ends: Float, sigmas: Float, offsets: I64 | None, n_rays: int
) -> tuple[Float, Float, Float]: ...
def weights_from_intervals_backward(
    t_starts: Float,
    t_ends: Float,
    sigmas: Float,
    trans: Float,
    alphas: Float,
    v_weights: Float | None,
    v_trans: Float | None,
    v_alphas: Float | None,
    need_t: bool,
    offsets: I64 | None,
    n_rays: int,
) -> tuple[Float, Float, Float]: ...
def weights_from_density_backward(
    trans: Float,
    alphas: Float,
    v_weights: Float | None,
    v_trans: Float | None,
    v_alphas: Float | None,
    offsets: I64 | None,
    n_rays: int,
) -> Float: ...
def weights_from_alpha(alphas: Float, offsets: I64 | None, n_rays: int) -> tuple[Float, Float]: ...
def weights_from_alpha_backward(
    alphas: Float,
    trans: Float,
    v_weights: Float | None,
    v_trans: Float | None,
    offsets: I64 | None,
    n_rays: int,
) -> Float: ...
def accumulate(
    weights: Float,
    values: Float | None,
    channels: int,
    n_rays: int,
    offsets: I64 | None = None,
    ray_indices: I64 | None = None,
) -> Float: ...
def accumulate_backward(
    weights: Float,
    values: Float | None,
    channels: int,
    n_rays: int,
    v_out: Float,
    offsets: I64 | None = None,
    ray_indices: I64 | None = None,
) -> tuple[Float, Float]: ...
def march(
    origins: F32,
    directions: F32,
    near: F32,
    far: F32,
    binaries: NDArray[np.bool_],
    aabb: tuple[float, float, float, float, float, float] | list[float],
    resolution: list[int] | tuple[int, int, int],
    levels: int,
    step: float,
    cone_angle: float,
    jitter: F32 | None = None,
) -> tuple[I64, F32, F32]: ...
def render(
    t_starts: Float,
    t_ends: Float,
    sigmas: Float,
    values: Float,
    channels: int,
    offsets: I64 | None,
    n_rays: int,
) -> tuple[Float, Float, Float, Float]: ...
def render_backward(
    t_starts: Float,
    t_ends: Float,
    sigmas: Float,
    values: Float,
    channels: int,
    weights: Float,
    v_colors: Float,
    v_opacities: Float,
    v_depths: Float,
    v_weights: Float | None,
    need_t: bool,
    offsets: I64 | None,
    n_rays: int,
) -> tuple[Float, Float, Float, Float]: ...
def project_to_views(
    points: Float,
    view_ids: I64,
    c2w: Float,
    intrinsics: Float,
    images: Float,
    dims: tuple[int, int, int, int, int, int, int],
) -> tuple[Float, NDArray[np.bool_]]: ...
def project_to_views_backward(
    points: Float,
    view_ids: I64,
    c2w: Float,
    intrinsics: Float,
    images: Float,
    dims: tuple[int, int, int, int, int, int, int],
    v_samples: Float,
    need_points: bool,
    need_images: bool,
) -> tuple[Float | None, Float | None]: ...
def knn(points: F32, k: int, queries: F32 | None = None, exclude_self: bool = False) -> tuple[F32, I64]: ...
def rasterize_mesh(
    vertices: F32,
    faces: I64,
    viewmat: F32,
    intrinsics: F32,
    width: int,
    height: int,
    convention: str,
    near: float = 1e-4,
) -> tuple[I64, F32, F32]: ...

# Texture baking: `(texture [H*W*C], texel_weight [H*W])`, float32 or float64 like `colors`.
def bake(
    colors: Float, uv: Float, weights: Float, channels: int, height: int, width: int
) -> tuple[Float, Float]: ...
# Texture dilation: `(texture [H*W*C], filled [H*W] bool, passes)`.
def dilate(
    texture: Float, filled: NDArray[np.bool_], height: int, width: int, channels: int, max_passes: int
) -> tuple[Float, NDArray[np.bool_], int]: ...

# EWA projection: `(means2d, conics, depths, radii, compensations)`, each flat `[C, N, ...]`;
def splat_project(
    means: Float,
    quats: Float,
    scales: Float,
    opacities: Float,
    viewmats: Float,
    ks: Float,
    width: int,
    height: int,
    near: float,
    far: float,
    eps2d: float,
    antialiased: bool,
    camera_model: str = "pinhole",
) -> tuple[NDArray[np.generic], ...]: ...

# Gradients `(means, quats, scales, viewmats or None)` of `splat_project` (the viewmats' `[C, 4,
def splat_project_backward(
    means: Float,
    quats: Float,
    scales: Float,
    opacities: Float,
    viewmats: Float,
    ks: Float,
    width: int,
    height: int,
    eps2d: float,
    radii: NDArray[np.int32] | I64,
    v_means2d: Float,
    v_conics: Float,
    v_depths: Float,
    v_compensations: Float,
    camera_model: str = "pinhole",
    viewmats_grad: bool = False,
) -> tuple[NDArray[np.generic] | None, ...]: ...

# Tile binning + compositing: `(colors, alphas, trans, last, isect_offsets, flatten_ids,
def splat_rasterize(
    means2d: Float,
    conics: Float,
    colors: Float,
    opacities: Float,
    radii: NDArray[np.int32] | I64,
    depths: Float,
    n_cameras: int,
    width: int,
    height: int,
    channels: int,
) -> tuple[NDArray[np.generic], ...]: ...

# Gradients `(means2d, conics, colors, opacities, absgrad or None)` of `splat_rasterize`.
def splat_rasterize_backward(
    means2d: Float,
    conics: Float,
    colors: Float,
    opacities: Float,
    n_cameras: int,
    width: int,
    height: int,
    channels: int,
    isect_offsets: NDArray[np.int32] | I64,
    flatten_ids: NDArray[np.int32] | I64,
    trans: Float,
    last: NDArray[np.int32] | I64,
    v_colors: Float,
    v_alphas: Float,
    absgrad: bool,
) -> tuple[NDArray[np.generic], ...]: ...

# SH colours `[C, N, 3]` of coefficients `[N, K, 3]` seen from `campos` `[C, 3]`.
def splat_sh(
    degree: int,
    coeffs: Float,
    k: int,
    means: Float,
    campos: Float,
) -> Float: ...

# Gradients `(coeffs, means)` of `splat_sh`.
def splat_sh_backward(
    degree: int,
    coeffs: Float,
    k: int,
    means: Float,
    campos: Float,
    v_colors: Float,
) -> tuple[NDArray[np.generic], ...]: ...

# Hash-grid encoding `[N * L * n_feat]` of points `x` `[N * 3]` with `table` `[L * T * n_feat]`.
def hashgrid_forward(
    x: Float, table: Float, resolutions: list[int], table_size: int, n_feat: int
) -> Float: ...

# Gradient `[L * T * n_feat]` of `hashgrid_forward` w.r.t. the table.
def hashgrid_backward(
    x: Float, v_out: Float, resolutions: list[int], table_size: int, n_feat: int
) -> Float: ...

# Gradient `[N * 3]` of `hashgrid_forward` w.r.t. the points `x`.
def hashgrid_backward_x(
    x: Float, table: Float, v_out: Float, resolutions: list[int], table_size: int, n_feat: int
) -> Float: ...

# distribution (NeRDF)
def render_distribution(
    coeffs: Float,
    taus: Float,
    near: Float,
    far: Float,
    noise: Float | None,
    n_samples: int,
    sigma_activation: str,
    last_delta: float,
    want_sigmas: bool,
) -> tuple[Float, Float, Float, Float | None, Float | None]: ...
def render_distribution_backward(
    coeffs: Float,
    taus: Float,
    near: Float,
    far: Float,
    noise: Float | None,
    n_samples: int,
    sigma_activation: str,
    last_delta: float,
    v_colors: Float | None,
    v_opacities: Float | None,
    v_depths: Float | None,
    v_sigmas: Float | None,
) -> Float: ...
