"""Triangle-mesh rasterization and texture sampling.

:func:`rasterize_mesh` runs the Rust kernel for CPU tensors and the pure-torch twin
(:mod:`raysplat.reference.mesh`) on other devices; both give the same result. Coverage is decided
on a 1/256-pixel fixed-point grid with exact integer edge functions and the top-left fill rule,
so meshes are watertight: each pixel centre is covered by exactly one of the triangles sharing an
edge or vertex. Triangles crossing the near plane (``z = 1e-4`` in front of the camera) are
*clipped*, not dropped, so the part in front of the camera is drawn. There is no backface culling.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from raysplat import _checks, _core
from raysplat.reference import mesh as _ref

#: Near-plane distance along the view axis; geometry closer than this is clipped away.
Z_NEAR = 1e-4
#: Largest supported image width / height.
MAX_SIZE = _ref.MAX_SIZE


class MeshRaster(NamedTuple):
    """Per-pixel output of :func:`rasterize_mesh` (``H = height``, ``W = width``)."""

    #: ``[H, W]`` int64 index of the visible face, ``-1`` where no face covers the pixel.
    triangle_id: torch.Tensor
    #: ``[H, W, 3]`` float32 perspective-correct barycentric weights of the face's vertices
    #: ``faces[triangle_id]`` (zeros where empty).
    barycentrics: torch.Tensor
    #: ``[H, W]`` float32 camera-space depth along the view axis, ``+inf`` where empty.
    depth: torch.Tensor
    #: ``[H, W, C]`` interpolated vertex attributes (zeros where empty), or ``None``.
    attributes: torch.Tensor | None


def _matrix(name: str, x: object, shapes: tuple[tuple[int, int], ...]) -> torch.Tensor:
    t = _checks.tensor(name, x, ndim=2, finite=True)
    if tuple(t.shape) not in shapes:
        want = " or ".join(str(list(s)) for s in shapes)
        raise ValueError(f"{name} must have shape {want}, got {tuple(t.shape)}")
    return t


def _view_from_c2w(c2w: torch.Tensor) -> torch.Tensor:
    m = torch.eye(4, dtype=torch.float64, device=c2w.device)
    m[: c2w.shape[0]] = c2w.detach().to(torch.float64)
    try:
        inv = torch.linalg.inv(m)
    except RuntimeError as e:
        raise ValueError(f"c2w must be invertible: {e}") from None
    if not bool(torch.isfinite(inv).all()):
        raise ValueError("c2w must be invertible")
    return inv


def interpolate(
    attributes: torch.Tensor,
    faces: torch.Tensor,
    triangle_id: torch.Tensor,
    barycentrics: torch.Tensor,
) -> torch.Tensor:
    """Interpolates per-vertex ``attributes [V, C]`` with a raster's ids and barycentrics.

    Returns ``[H, W, C]`` in ``attributes``' dtype, zeros where ``triangle_id < 0``;
    differentiable with respect to ``attributes``.
    """
    hit = triangle_id >= 0
    shape = (*triangle_id.shape, attributes.shape[-1])
    if faces.shape[0] == 0:
        return attributes.new_zeros(shape)
    n, c = triangle_id.numel(), attributes.shape[-1]
    corners = faces.to(torch.int64).index_select(0, triangle_id.clamp(min=0).reshape(-1))
    vals = attributes.index_select(0, corners.reshape(-1)).view(n, 3, c)
    b = barycentrics.reshape(n, 3, 1).to(attributes.dtype)
    out = (vals[:, 0] * b[:, 0] + vals[:, 1] * b[:, 1] + vals[:, 2] * b[:, 2]).view(shape)
    return torch.where(hit[..., None], out, torch.zeros((), dtype=out.dtype, device=out.device))


def rasterize_mesh(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    viewmat: torch.Tensor | None = None,
    K: torch.Tensor | None = None,
    width: int | None = None,
    height: int | None = None,
    c2w: torch.Tensor | None = None,
    attributes: torch.Tensor | None = None,
    convention: str = "opengl",
) -> MeshRaster:
    """Rasterizes a triangle mesh seen by one pinhole camera.

    Args:
        vertices: ``[V, 3]`` float world-space positions (computed in float32 / float64).
        faces: ``[F, 3]`` integer vertex indices in ``0..V``.
        viewmat: ``[4, 4]`` world-to-camera matrix. Give exactly one of ``viewmat`` / ``c2w``.
        K: ``[3, 3]`` pinhole intrinsics (non-zero focal lengths, last row ``[0, 0, 1]``).
        width, height: image size in pixels (``1..=65536``); pixel centres are at ``+0.5``.
        c2w: ``[3, 4]`` or ``[4, 4]`` camera-to-world matrix (inverted here).
        attributes: optional ``[V, C]`` float per-vertex attributes (UVs, normals, colours)
            interpolated perspective-correctly; differentiable w.r.t. ``attributes`` only.
        convention: camera axes of ``viewmat`` / ``c2w``: ``"opengl"`` (x right, y up, looking
            down -z) or ``"opencv"`` (x right, y down, looking down +z).

    Returns:
        :class:`MeshRaster`. The nearest surface wins; exact depth ties go to the lower face
        index. Triangles crossing the near plane ``Z_NEAR`` are clipped to it; no backface
        culling. ``triangle_id`` / ``barycentrics`` / ``depth`` carry no gradient.

    Raises:
        TypeError: an argument has the wrong type or dtype (or ``K`` / ``width`` / ``height``
            is missing).
        ValueError: wrong shapes, NaN / infinite values, face indices out of range, both or
            neither of ``viewmat`` / ``c2w``, or a bad ``convention``.
    """
    vertices = _checks.tensor("vertices", vertices, ndim=2, last=3, finite=True)
    faces = _checks.tensor("faces", faces, ndim=2, last=3, floating=False)
    if (viewmat is None) == (c2w is None):
        raise ValueError("exactly one of viewmat or c2w must be given")
    if K is None:
        raise TypeError("K must be a torch.Tensor, got NoneType")
    K = _matrix("K", K, ((3, 3),))
    width = _checks.positive_int("width", width)
    height = _checks.positive_int("height", height)
    if width > MAX_SIZE or height > MAX_SIZE:
        raise ValueError(f"width and height must be at most {MAX_SIZE}, got {width}x{height}")
    convention = _checks.choice("convention", convention, ("opengl", "opencv"))
    if c2w is not None:
        c2w = _matrix("c2w", c2w, ((3, 4), (4, 4)))
    else:
        viewmat = _matrix("viewmat", viewmat, ((4, 4),))
    if attributes is not None:
        attributes = _checks.tensor("attributes", attributes, ndim=2)
        if attributes.shape[0] != vertices.shape[0]:
            raise ValueError(
                f"attributes must have one row per vertex ({vertices.shape[0]}), "
                f"got shape {tuple(attributes.shape)}"
            )
    _checks.same_device(vertices=vertices, faces=faces, viewmat=viewmat, c2w=c2w, K=K, attributes=attributes)
    k = K.detach().to(torch.float32).cpu().tolist()
    if k[0][0] == 0 or k[1][1] == 0:
        raise ValueError("K: focal lengths K[0, 0] and K[1, 1] must be non-zero")
    if k[2] != [0.0, 0.0, 1.0]:
        raise ValueError(f"K: the last row must be [0, 0, 1], got {k[2]}")
    nv = vertices.shape[0]
    if faces.numel() > 0:
        lo, hi = int(faces.min()), int(faces.max())
        if lo < 0 or hi >= nv:
            bad = lo if lo < 0 else hi
            raise ValueError(f"faces: vertex index {bad} is outside 0..{nv}")
    view = _view_from_c2w(c2w) if c2w is not None else viewmat.detach()
    view = view.to(torch.float32)

    if _checks.use_rust(vertices, faces, view, K):
        tid, bary, depth = _core.rasterize_mesh(
            _checks.to_numpy("vertices", vertices),
            _checks.to_numpy("faces", faces, torch.int64),
            _checks.to_numpy("viewmat", view),
            _checks.to_numpy("K", K),
            width,
            height,
            convention,
            Z_NEAR,
        )
        tid = _checks.from_numpy(tid, (height, width))
        bary = _checks.from_numpy(bary, (height, width, 3))
        depth = _checks.from_numpy(depth, (height, width))
    else:
        tid, bary, depth = _ref.rasterize_mesh(vertices, faces, view, K, width, height, convention, Z_NEAR)
    attr = None if attributes is None else interpolate(attributes, faces, tid, bary)
    return MeshRaster(tid, bary, depth, attr)


def sample_texture(texture: torch.Tensor, uv: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Samples ``texture [H, W, C]`` at texture coordinates ``uv [..., 2]``; returns ``[..., C]``.

    ``u`` runs left to right and ``v`` bottom to top (OBJ / glTF-as-loaded convention: ``v = 0``
    is the last row), both over ``[0, 1]``; texel centres sit at ``(i + 0.5) / size``. Outside
    the texture the edge texels repeat (clamp-to-edge). ``"bilinear"`` interpolates the four
    nearest texels (column ``u * W - 0.5``, row ``(1 - v) * H - 0.5``) and is differentiable
    w.r.t. both ``texture`` and ``uv``; ``"nearest"`` picks texel ``(floor((1 - v) * H),
    floor(u * W))`` and is differentiable w.r.t. ``texture``. Pure torch, any device; the result
    has the promoted dtype of ``texture`` and ``uv``.
    """
    texture = _checks.tensor("texture", texture, ndim=3)
    uv = _checks.tensor("uv", uv, last=2, finite=True)
    mode = _checks.choice("mode", mode, ("bilinear", "nearest"))
    _checks.same_device(texture=texture, uv=uv)
    h, w, c = texture.shape
    if h == 0 or w == 0:
        raise ValueError(f"texture must be non-empty, got shape {tuple(texture.shape)}")
    dtype = torch.promote_types(texture.dtype, uv.dtype)
    tex = texture.to(dtype).reshape(h * w, c)
    flat = uv.to(dtype).reshape(-1, 2)
    u, v = flat[:, 0], flat[:, 1]
    if mode == "nearest":
        col = torch.floor((u * w).clamp(-1.0, w)).to(torch.int64).clamp(0, w - 1)
        row = torch.floor(((1 - v) * h).clamp(-1.0, h)).to(torch.int64).clamp(0, h - 1)
        out = tex[row * w + col]
    else:
        x = (u * w - 0.5).clamp(-1.0, float(w))
        y = ((1 - v) * h - 0.5).clamp(-1.0, float(h))
        x0f, y0f = torch.floor(x), torch.floor(y)
        fx, fy = (x - x0f)[:, None], (y - y0f)[:, None]
        x0, y0 = x0f.to(torch.int64), y0f.to(torch.int64)
        c0, c1 = x0.clamp(0, w - 1), (x0 + 1).clamp(0, w - 1)
        r0, r1 = y0.clamp(0, h - 1), (y0 + 1).clamp(0, h - 1)
        top = tex[r0 * w + c0] * (1 - fx) + tex[r0 * w + c1] * fx
        bottom = tex[r1 * w + c0] * (1 - fx) + tex[r1 * w + c1] * fx
        out = top * (1 - fy) + bottom * fy
    return out.reshape(*uv.shape[:-1], c)
