"""Pure-torch twin of the texture-baking kernels (``rust/core/src/bake.rs``): the bilinear splat
(adjoint of :func:`raysplat.sample_texture`), normalised per texel, and ring-by-ring dilation."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def footprint(uv: torch.Tensor, height: int, width: int):
    """Flat texel indices ``[P, 4]`` and bilinear weights ``[P, 4]`` of ``uv [P, 2]`` (the
    footprint of bilinear :func:`raysplat.sample_texture`, clamp-to-edge)."""
    u, v = uv[:, 0].double(), uv[:, 1].double()
    x = (u * width - 0.5).clamp(-1.0, float(width))
    y = ((1 - v) * height - 0.5).clamp(-1.0, float(height))
    x0f, y0f = torch.floor(x), torch.floor(y)
    fx, fy = x - x0f, y - y0f
    x0, y0 = x0f.long(), y0f.long()
    c0, c1 = x0.clamp(0, width - 1), (x0 + 1).clamp(0, width - 1)
    r0, r1 = y0.clamp(0, height - 1), (y0 + 1).clamp(0, height - 1)
    idx = torch.stack([r0 * width + c0, r0 * width + c1, r1 * width + c0, r1 * width + c1], 1)
    wts = torch.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], 1)
    return idx, wts


def bake(colors: torch.Tensor, uv: torch.Tensor, weights: torch.Tensor, height: int, width: int):
    """``(texture [H, W, C], texel_weight [H, W])`` of pixels ``colors [P, C]`` at ``uv [P, 2]``
    with ``weights [P]`` (accumulated in float64, returned in ``colors``' dtype)."""
    c = colors.shape[1]
    live = weights > 0
    colors, uv, weights = colors[live], uv[live], weights[live]
    idx, b = footprint(uv, height, width)
    wb = (weights.double()[:, None] * b).reshape(-1)
    flat = idx.reshape(-1)
    acc = torch.zeros(height * width, c, dtype=torch.float64, device=colors.device)
    ws = torch.zeros(height * width, dtype=torch.float64, device=colors.device)
    acc.index_add_(0, flat, wb[:, None] * colors.double().repeat_interleave(4, 0))
    ws.index_add_(0, flat, wb)
    tex = torch.where(ws[:, None] > 0, acc / ws.clamp(min=1e-300)[:, None], torch.zeros_like(acc))
    return tex.reshape(height, width, c).to(colors.dtype), ws.reshape(height, width).to(colors.dtype)


def dilate(texture: torch.Tensor, filled: torch.Tensor, max_passes: int):
    """``(texture, filled, passes)``: unfilled texels take the mean of their filled
    8-neighbours, one ring per pass, until all are filled, nothing changes or ``max_passes``."""
    tex, mask = texture.clone(), filled.clone()
    h, w, c = tex.shape
    ones = torch.ones(1, 1, 3, 3, dtype=tex.dtype, device=tex.device)
    passes = 0
    while passes < max_passes and not bool(mask.all()):
        m = mask.to(tex.dtype)[None, None]
        s = F.conv2d((tex * m[0, 0, ..., None]).permute(2, 0, 1)[:, None], ones, padding=1)[:, 0]
        n = F.conv2d(m, ones, padding=1)[0, 0]
        new = (~mask) & (n > 0)
        if not bool(new.any()):
            break
        mean = (s / n.clamp(min=1)).permute(1, 2, 0)
        tex = torch.where(new[..., None], mean, tex)
        mask = mask | new
        passes += 1
    return tex, mask, passes
