"""Texture baking: per-view pixels -> one UV texture, the texture space of :mod:`raysplat.texgen`.

* :func:`bake` scatters pixels into texels with a bilinear splat, the adjoint of bilinear
  :func:`raysplat.sample_texture` (so :func:`render_texture` of a baked texture reproduces
  the views on the texels they cover), weighted per pixel and normalised per texel: every
  covered texel is a convex combination of the pixels that reach it. Differentiable with
  respect to ``colors`` and ``weights`` (not ``uv``); texels no pixel reaches have no gradient.
* :func:`view_weights` gives the per-pixel weight ``visible · max(0, cos θ)^p`` (θ between the
  view ray and the surface normal), :func:`cosine_exponent` the exponent's schedule over the
  denoising steps (SyncMVD anneals it linearly 0 → 6: early steps blend all views evenly,
  late steps trust the most frontal one).
* :func:`fill_holes` fills the texels no view covered from their neighbours (ring-by-ring
  dilation: the mean of the filled 8-neighbours), inside the charts and around them, so that
  bilinear lookups and mip-maps near chart borders never read the background.

The Rust kernels (``rust/core/src/bake.rs``) run for CPU tensors, the pure-torch twins
(:mod:`raysplat.reference.bake`) elsewhere; both accumulate in float64.
"""

from __future__ import annotations

import torch

from raysplat import _checks, _core
from raysplat.mesh import sample_texture
from raysplat.reference import bake as _ref

__all__ = ["bake", "cosine_exponent", "fill_holes", "render_texture", "view_weights"]


def _size(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, (tuple, list)) and len(size) == 2:
        h, w = size
    else:
        h = w = size
    return _checks.positive_int("size", h), _checks.positive_int("size", w)


def _forward(colors: torch.Tensor, uv: torch.Tensor, weights: torch.Tensor, h: int, w: int):
    c = colors.shape[1]
    if _checks.use_rust(colors, uv, weights):
        dt = _checks.float_dtype_of(colors)
        tex, tw = _core.bake(
            _checks.to_numpy("colors", colors, dt),
            _checks.to_numpy("uv", uv, dt),
            _checks.to_numpy("weights", weights, dt),
            c,
            h,
            w,
        )
        return (
            _checks.from_numpy(tex, (h, w, c), colors.dtype),
            _checks.from_numpy(tw, (h, w), colors.dtype),
        )
    return _ref.bake(colors.detach(), uv.detach(), weights.detach(), h, w)


class _Bake(torch.autograd.Function):
    @staticmethod
    def forward(ctx, colors, uv, weights, h, w):
        tex, tw = _forward(colors, uv, weights, h, w)
        ctx.save_for_backward(colors, uv, weights, tex, tw)
        return tex, tw

    @staticmethod
    def backward(ctx, v_texture, v_texel_weight):
        colors, uv, weights, tex, tw = ctx.saved_tensors
        v_colors = v_weights = None
        g = torch.where(tw[..., None] > 0, v_texture / tw.clamp(min=1e-30)[..., None], 0.0)
        gs = sample_texture(g, uv)  # [P, C]: Σ_t b_pt v_tex[t] / S_t
        live = (weights > 0)[:, None]
        if ctx.needs_input_grad[0]:
            v_colors = torch.where(live, weights[:, None] * gs, 0.0).to(colors.dtype)
        if ctx.needs_input_grad[2]:
            gt = sample_texture((g * tex).sum(-1, keepdim=True), uv)[:, 0]
            v_weights = (gs * colors).sum(-1) - gt + sample_texture(v_texel_weight[..., None], uv)[:, 0]
            v_weights = v_weights.to(weights.dtype)
        return v_colors, None, v_weights, None, None


def bake(
    colors: torch.Tensor,
    uv: torch.Tensor,
    weights: torch.Tensor,
    size: int | tuple[int, int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scatters weighted pixels into a ``size`` texture.

    Args:
        colors: ``[..., C]`` pixel colours (e.g. ``[N, H, W, 3]`` for N views).
        uv: ``[..., 2]`` texture coordinates of the pixels (``u`` left to right, ``v`` bottom
            to top, as :func:`raysplat.sample_texture`).
        weights: ``[...]`` non-negative per-pixel weights (0 for pixels that see no surface).
        size: texture ``height = width`` or ``(height, width)``.

    Returns:
        ``(texture [H, W, C], texel_weight [H, W])``: ``texture = Σ w b c / Σ w b`` over the
        pixels reaching a texel (bilinear weights ``b``), zeros where ``texel_weight == 0``.

    Raises:
        TypeError / ValueError: wrong types or shapes, NaN / infinite values, negative weights.
    """
    colors = _checks.tensor("colors", colors, finite=True)
    uv = _checks.tensor("uv", uv, last=2, finite=True)
    weights = _checks.tensor("weights", weights, finite=True)
    if colors.ndim < 1 or colors.shape[-1] == 0:
        raise ValueError(f"colors must have shape [..., C] with C >= 1, got {tuple(colors.shape)}")
    if uv.shape[:-1] != colors.shape[:-1] or tuple(weights.shape) != tuple(colors.shape[:-1]):
        raise ValueError(
            f"colors [..., C], uv [..., 2] and weights [...] must share leading dimensions, got "
            f"{tuple(colors.shape)}, {tuple(uv.shape)}, {tuple(weights.shape)}"
        )
    if weights.numel() and float(weights.detach().min()) < 0:
        raise ValueError("weights must be non-negative")
    _checks.same_device(colors=colors, uv=uv, weights=weights)
    h, w = _size(size)
    c = colors.shape[-1]
    dtype = torch.promote_types(colors.dtype, weights.dtype)
    dtype = dtype if dtype == torch.float64 else torch.float32
    return _Bake.apply(
        colors.reshape(-1, c).to(dtype), uv.reshape(-1, 2).to(dtype), weights.reshape(-1).to(dtype), h, w
    )


def fill_holes(
    texture: torch.Tensor, texel_weight: torch.Tensor, max_passes: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fills texels with ``texel_weight == 0`` by dilation: each pass, every unfilled texel with
    a filled 8-neighbour takes their mean. Runs until every texel is filled (or ``max_passes``).
    Returns ``(texture, filled [H, W] bool)``; not differentiable. A texture with no covered
    texel is returned unchanged."""
    texture = _checks.tensor("texture", texture, ndim=3, finite=True)
    texel_weight = _checks.tensor("texel_weight", texel_weight, ndim=2)
    if tuple(texel_weight.shape) != tuple(texture.shape[:2]):
        raise ValueError(
            f"texel_weight must have shape {tuple(texture.shape[:2])}, got {tuple(texel_weight.shape)}"
        )
    h, w, c = texture.shape
    passes = h + w if max_passes is None else _checks.positive_int("max_passes", max_passes, 0)
    filled = texel_weight > 0
    if _checks.use_rust(texture, texel_weight):
        dt = _checks.float_dtype_of(texture)
        tex, mask, _ = _core.dilate(
            _checks.to_numpy("texture", texture, dt),
            filled.contiguous().numpy(),
            h,
            w,
            c,
            passes,
        )
        return _checks.from_numpy(tex, (h, w, c), texture.dtype), _checks.from_numpy(mask, (h, w))
    tex, mask, _ = _ref.dilate(texture.detach(), filled, passes)
    return tex, mask


def view_weights(
    normals: torch.Tensor, view_dirs: torch.Tensor, visible: torch.Tensor, exponent: float
) -> torch.Tensor:
    """``visible · max(0, -n·d)^exponent`` per pixel, 0 on back faces (``-n·d <= 0``).

    ``normals [..., 3]`` (unit surface normals), ``view_dirs [..., 3]`` (unit ray directions
    from the camera), ``visible [...]`` bool; values in [0, 1]."""
    normals = _checks.tensor("normals", normals, last=3)
    view_dirs = _checks.tensor("view_dirs", view_dirs, last=3)
    if not (exponent >= 0):
        raise ValueError(f"exponent must be >= 0, got {exponent}")
    cos = -(normals * view_dirs).sum(-1)
    front = visible.bool() & (cos > 0)
    return torch.where(front, cos.clamp(min=0, max=1) ** exponent, torch.zeros_like(cos))


def cosine_exponent(step: int, steps: int, start: float = 0.0, end: float = 6.0) -> float:
    """The cosine-weight exponent at denoising ``step`` (0-based) of ``steps``: linear from
    ``start`` to ``end`` (SyncMVD's schedule)."""
    if steps <= 1:
        return float(end)
    return float(start + (end - start) * step / (steps - 1))


def render_texture(texture: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Renders ``texture [H, W, C]`` into a view from its ``uv [..., 2]`` buffer (bilinear
    :func:`raysplat.sample_texture`, differentiable in both)."""
    return sample_texture(texture, uv)
