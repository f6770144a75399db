"""Camera rays: generation from pinhole cameras, LLFF NDC warping, ray-box intersection."""

from __future__ import annotations

import torch

from raysplat import _checks as chk
from raysplat import _core
from raysplat.reference import rays as ref


def _batch_cameras(c2w: torch.Tensor, K: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool]:
    chk.tensor("c2w", c2w, ndim=(2, 3))
    chk.tensor("K", K, ndim=(2, 3))
    chk.same_device(c2w=c2w, K=K)
    chk.tensor("c2w", c2w, finite=True)
    chk.tensor("K", K, finite=True)
    if tuple(c2w.shape[-2:]) not in ((3, 4), (4, 4)):
        raise ValueError(f"c2w must have shape [..., 3, 4] or [..., 4, 4], got {tuple(c2w.shape)}")
    if tuple(K.shape[-2:]) != (3, 3):
        raise ValueError(f"K must have shape [..., 3, 3], got {tuple(K.shape)}")
    batched = c2w.dim() == 3
    c2w = (c2w if batched else c2w[None])[:, :3, :4]
    K = K if K.dim() == 3 else K[None]
    if K.shape[0] == 1 and c2w.shape[0] != 1:
        K = K.expand(c2w.shape[0], 3, 3)
    if K.shape[0] != c2w.shape[0]:
        raise ValueError(f"K holds {K.shape[0]} cameras but c2w holds {c2w.shape[0]}")
    if bool((K[:, 0, 0] == 0).any()) or bool((K[:, 1, 1] == 0).any()):
        raise ValueError("K must have non-zero focal lengths K[0, 0] and K[1, 1]")
    return c2w, K, batched


def generate_rays(
    c2w: torch.Tensor,
    K: torch.Tensor,
    width: int,
    height: int,
    convention: str = "opengl",
    pixels: torch.Tensor | None = None,
    jitter: bool = False,
    normalize: bool = True,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pinhole camera rays.

    Args:
        c2w: camera-to-world matrices, [3, 4] / [4, 4] or batched [C, 3, 4] / [C, 4, 4].
        K: intrinsics [3, 3] (shared) or [C, 3, 3].
        width, height: image size in pixels.
        convention: ``"opengl"`` (camera looks down -z, y up: NeRF, Blender, nerfstudio) or
            ``"opencv"`` (looks down +z, y down: COLMAP).
        pixels: optional int64 [N] flat pixel indices ``cam * H * W + y * W + x`` (random ray
            batches); ``None`` renders every pixel.
        jitter: uniform sub-pixel positions instead of pixel centres (+0.5).
        normalize: unit-length directions (otherwise camera-space ``|z| = 1``).
        generator: random generator for ``jitter``.

    Returns:
        ``(origins, directions)``: [N, 3] with ``pixels``, else [C, H, W, 3] ([H, W, 3] for a
        single unbatched camera).
    """
    width = chk.positive_int("width", width)
    height = chk.positive_int("height", height)
    convention = chk.choice("convention", convention, ("opengl", "opencv"))
    c2w, K, batched = _batch_cameras(c2w, K)
    device = chk.same_device(c2w=c2w, K=K, pixels=pixels)
    n_cams = c2w.shape[0]
    if pixels is not None:
        chk.tensor("pixels", pixels, ndim=1, floating=False)
        pixels = pixels.long()
        total = n_cams * width * height
        if pixels.numel() and (int(pixels.min()) < 0 or int(pixels.max()) >= total):
            raise ValueError(f"pixels must be flat indices in [0, {total}) (cameras * height * width)")
    n = pixels.shape[0] if pixels is not None else n_cams * width * height
    offsets = None
    if jitter:
        offsets = torch.rand((n, 2), generator=generator, device=device, dtype=torch.float32)
    if chk.use_rust(c2w, K, pixels):
        o, d = _core.generate_rays(
            chk.to_numpy("c2w", c2w),
            chk.to_numpy("K", K),
            n_cams,
            width,
            height,
            convention,
            None if pixels is None else chk.to_numpy("pixels", pixels, torch.int64),
            None if offsets is None else chk.to_numpy("offsets", offsets),
            normalize,
        )
        o, d = chk.from_numpy(o, (n, 3)), chk.from_numpy(d, (n, 3))
    else:
        o, d = ref.generate_rays(
            c2w.float(), K.float(), width, height, convention, pixels, offsets, normalize
        )
    if pixels is None:
        shape = (n_cams, height, width, 3) if batched else (height, width, 3)
        o, d = o.reshape(shape), d.reshape(shape)
    return o, d


def ndc_rays(
    origins: torch.Tensor,
    directions: torch.Tensor,
    focal: float | tuple[float, float] | torch.Tensor,
    width: int,
    height: int,
    near: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Maps forward-facing (LLFF) rays to normalized device coordinates (NeRF, appendix C).

    Args:
        origins, directions: [..., 3] world rays (OpenGL convention, scene at -z).
        focal: focal length in pixels, ``(fx, fy)``, or intrinsics ``K`` [3, 3].
        width, height: image size.
        near: the near plane rays are moved to; NDC depth 0 maps to it and 1 to infinity.

    Returns:
        ``(origins_ndc, directions_ndc)`` with the input shape.
    """
    chk.tensor("origins", origins, last=3, finite=True)
    chk.tensor("directions", directions, last=3, finite=True)
    chk.same_shape("origins", origins, "directions", directions)
    chk.same_device(origins=origins, directions=directions)
    if isinstance(focal, torch.Tensor):
        if focal.shape == (3, 3):
            fx, fy = float(focal[0, 0]), float(focal[1, 1])
        elif focal.numel() in (1, 2):
            fx, fy = float(focal.flatten()[0]), float(focal.flatten()[-1])
        else:
            raise ValueError(f"focal tensor must be K [3, 3] or hold 1-2 values, got {tuple(focal.shape)}")
    elif isinstance(focal, (tuple, list)):
        fx, fy = float(focal[0]), float(focal[1])
    else:
        fx = fy = float(focal)
    if fx == 0 or fy == 0:
        raise ValueError("focal must be non-zero")
    if not near > 0:
        raise ValueError(f"near must be positive, got {near}")
    width = chk.positive_int("width", width)
    height = chk.positive_int("height", height)
    shape = origins.shape
    o, d = origins.reshape(-1, 3), directions.reshape(-1, 3)
    if chk.use_rust(o, d):
        ro, rd = _core.ndc_rays(
            chk.to_numpy("origins", o),
            chk.to_numpy("directions", d),
            fx,
            fy,
            float(width),
            float(height),
            float(near),
        )
        return chk.from_numpy(ro, shape), chk.from_numpy(rd, shape)
    if bool((d[:, 2] == 0).any()):
        raise ValueError("directions: a ray is parallel to the image plane (direction z = 0)")
    ro, rd = ref.ndc_rays(o, d, fx, fy, float(width), float(height), float(near))
    return ro.reshape(shape), rd.reshape(shape)


def ray_aabb_intersect(
    origins: torch.Tensor, directions: torch.Tensor, aabb: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Distances where rays enter and leave axis-aligned boxes (slab test).

    Args:
        origins, directions: [N, 3].
        aabb: one box [6] = (xmin, ymin, zmin, xmax, ymax, zmax) or M boxes [M, 6].

    Returns:
        ``(t_near, t_far, hit)`` of shape [N] (one box) or [N, M]. ``t_near`` is clamped to 0
        (the ray starts at its origin); misses have ``hit = False`` and ``t_near = t_far = 0``.
    """
    chk.tensor("origins", origins, ndim=2, last=3, finite=True)
    chk.tensor("directions", directions, ndim=2, last=3, finite=True)
    chk.tensor("aabb", aabb, ndim=(1, 2), last=6, finite=True)
    chk.same_shape("origins", origins, "directions", directions)
    chk.same_device(origins=origins, directions=directions, aabb=aabb)
    boxes = aabb.reshape(-1, 6)
    if bool((boxes[:, :3] > boxes[:, 3:]).any()):
        raise ValueError("aabb: min corner must not exceed max corner")
    n, m = origins.shape[0], boxes.shape[0]
    if chk.use_rust(origins, directions, boxes):
        tn, tf, hit = _core.ray_aabb_intersect(
            chk.to_numpy("origins", origins),
            chk.to_numpy("directions", directions),
            chk.to_numpy("aabb", boxes),
        )
        tn, tf, hit = (chk.from_numpy(x, (n, m)) for x in (tn, tf, hit))
    else:
        tn, tf, hit = ref.ray_aabb_intersect(origins.float(), directions.float(), boxes.float())
    if aabb.dim() == 1:
        return tn[:, 0], tf[:, 0], hit[:, 0]
    return tn, tf, hit
