"""Torch twins of ray generation, NDC mapping and ray-box intersection."""

from __future__ import annotations

import torch


def generate_rays(
    c2w: torch.Tensor,
    K: torch.Tensor,
    width: int,
    height: int,
    convention: str,
    pixels: torch.Tensor | None,
    offsets: torch.Tensor | None,
    normalize: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays for flat pixel indices of ``c2w`` [C,3,4] / ``K`` [C,3,3]; returns [N,3] each."""
    n_cams = c2w.shape[0]
    per_cam = width * height
    if pixels is None:
        pixels = torch.arange(n_cams * per_cam, device=c2w.device)
    cam = torch.div(pixels, per_cam, rounding_mode="floor")
    rem = pixels % per_cam
    py = torch.div(rem, width, rounding_mode="floor").to(c2w.dtype)
    px = (rem % width).to(c2w.dtype)
    if offsets is None:
        ox = oy = 0.5
    else:
        ox, oy = offsets[:, 0], offsets[:, 1]
    k = K[cam]
    x = (px + ox - k[:, 0, 2]) / k[:, 0, 0]
    y = (py + oy - k[:, 1, 2]) / k[:, 1, 1]
    one = torch.ones_like(x)
    d_cam = torch.stack([x, y, one], -1) if convention == "opencv" else torch.stack([x, -y, -one], -1)
    m = c2w[cam]
    d = (m[:, :, :3] * d_cam[:, None, :]).sum(-1)
    o = m[:, :, 3].clone()
    if normalize:
        n = d.norm(dim=-1, keepdim=True)
        d = torch.where(n > 0, d / n.clamp_min(1e-30), d)
    return o, d


def ndc_rays(
    origins: torch.Tensor,
    directions: torch.Tensor,
    fx: float,
    fy: float,
    width: float,
    height: float,
    near: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """LLFF NDC rays (NeRF appendix C)."""
    t = -(near + origins[:, 2]) / directions[:, 2]
    o = origins + t[:, None] * directions
    ox, oy, oz = o[:, 0], o[:, 1], o[:, 2]
    dx, dy, dz = directions[:, 0], directions[:, 1], directions[:, 2]
    ax, ay = -fx / (width / 2.0), -fy / (height / 2.0)
    o_ndc = torch.stack([ax * ox / oz, ay * oy / oz, 1.0 + 2.0 * near / oz], -1)
    d_ndc = torch.stack([ax * (dx / dz - ox / oz), ay * (dy / dz - oy / oz), -2.0 * near / oz], -1)
    return o_ndc, d_ndc


def ray_aabb_intersect(
    origins: torch.Tensor, directions: torch.Tensor, aabbs: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Slab test of [N] rays against [M] boxes; returns [N, M] t_near, t_far, hit."""
    o = origins[:, None, :]
    d = directions[:, None, :]
    lo, hi = aabbs[None, :, :3], aabbs[None, :, 3:]
    zero = d == 0
    inv = 1.0 / torch.where(zero, torch.ones_like(d), d)
    ta, tb = (lo - o) * inv, (hi - o) * inv
    t0 = torch.minimum(ta, tb)
    t1 = torch.maximum(ta, tb)
    inside = (o >= lo) & (o <= hi)
    inf = torch.full_like(t0, float("inf"))
    t0 = torch.where(zero, torch.where(inside, -inf, inf), t0)
    t1 = torch.where(zero, torch.where(inside, inf, -inf), t1)
    t_enter = t0.amax(-1).clamp_min(0.0)
    t_exit = t1.amin(-1)
    hit = t_exit >= t_enter
    zeros = torch.zeros_like(t_enter)
    return torch.where(hit, t_enter, zeros), torch.where(hit, t_exit, zeros), hit
