# Type stubs for the native module raysplat._core (rust/py). Hand-written; keep in sync.
# Float arguments of differentiable kernels accept float32 or float64 (all the same dtype);
# every result is a new 1-D array that the Python layer reshapes.

import numpy as np
from numpy.typing import NDArray

F32 = NDArray[np.float32]
Float = NDArray[np.float32] | NDArray[np.float64]
I64 = NDArray[np.int64]

__version__: str

def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...
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
    t_edges_prop: Float, weights_prop: Float, t_edges: Float, n_rays: int, grad: Float
) -> Float: ...
def segment_offsets(ray_indices: I64, n_rays: int) -> I64: ...
def scan(inputs: Float, offsets: I64 | None, n_rays: int, op: str, exclusive: bool) -> Float: ...
def scan_backward(
    inputs: Float, grad: Float, offsets: I64 | None, n_rays: int, op: str, exclusive: bool
) -> Float: ...
def weights_from_density(sigma_dt: Float, offsets: I64 | None, n_rays: int) -> tuple[Float, Float, Float]: ...
def weights_from_density_backward(
    trans: Float,
    alphas: Float,
    grad_weights: Float | None,
    grad_trans: Float | None,
    grad_alphas: Float | None,
    offsets: I64 | None,
    n_rays: int,
) -> Float: ...
def weights_from_alpha(alphas: Float, offsets: I64 | None, n_rays: int) -> tuple[Float, Float]: ...
def weights_from_alpha_backward(
    alphas: Float,
    trans: Float,
    grad_weights: Float | None,
    grad_trans: Float | None,
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
    grad_out: Float,
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
    sigma_dt: Float, values: Float, channels: int, t_mid: Float, offsets: I64 | None, n_rays: int
) -> tuple[Float, Float, Float, Float]: ...
def render_backward(
    sigma_dt: Float,
    values: Float,
    channels: int,
    t_mid: Float,
    weights: Float,
    grad_color: Float,
    grad_opacity: Float,
    grad_depth: Float,
    grad_weights: Float | None,
    offsets: I64 | None,
    n_rays: int,
) -> tuple[Float, Float, Float]: ...
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
