"""Torch twin of occupancy-grid marching: brute force over every step of every ray.

It defines the semantics the Rust DDA must reproduce exactly: samples are the steps
``t_k = t_start + k * dt`` (or ``t_{k+1} = t_k + max(step, cone_angle * t_k)``) whose
midpoint lies in an occupied cell of the finest level containing it.
"""

from __future__ import annotations

import torch

from raysplat.reference.rays import ray_aabb_intersect


def level_aabbs(aabb: torch.Tensor, levels: int) -> torch.Tensor:
    """[levels, 6] boxes: level l is ``aabb`` scaled by 2^l about its centre."""
    c = 0.5 * (aabb[:3] + aabb[3:])
    h = 0.5 * (aabb[3:] - aabb[:3])
    s = (2.0 ** torch.arange(levels, device=aabb.device, dtype=aabb.dtype))[:, None]
    return torch.cat([c - h * s, c + h * s], -1)


def occupied(x: torch.Tensor, binaries: torch.Tensor, aabb: torch.Tensor) -> torch.Tensor:
    """Whether points [..., 3] fall in an occupied cell (``binaries`` [L, rx, ry, rz]).

    Same float32 arithmetic as the Rust ``GridTables::locate``.
    """
    levels = binaries.shape[0]
    res = torch.tensor(binaries.shape[1:], device=x.device)
    c = 0.5 * (aabb[:3] + aabb[3:])
    inv_h = 1.0 / (0.5 * (aabb[3:] - aabb[:3]))
    m = ((x - c).abs() * inv_h).amax(-1)
    level = torch.zeros_like(m, dtype=torch.long)
    for lv in range(1, levels + 1):
        level = torch.where(m >= 2.0 ** (lv - 1), torch.full_like(level, lv), level)
    inside = level < levels
    lvl = level.clamp(max=levels - 1)
    boxes = level_aabbs(aabb, levels)
    lo = boxes[:, :3]
    scale = res.to(x.dtype) / (boxes[:, 3:] - boxes[:, :3])
    ijk = ((x - lo[lvl]) * scale[lvl]).clamp_min(0).long()
    ijk = torch.minimum(ijk, res - 1)
    occ = binaries[lvl, ijk[..., 0], ijk[..., 1], ijk[..., 2]]
    return occ & inside


def march(
    origins: torch.Tensor,
    directions: torch.Tensor,
    near: torch.Tensor,
    far: torch.Tensor,
    binaries: torch.Tensor,
    aabb: torch.Tensor,
    step: float,
    cone_angle: float,
    jitter: torch.Tensor | None,
    chunk_steps: int = 256,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Packed ``(ray_indices, t_starts, t_ends)`` of every occupied step."""
    levels = binaries.shape[0]
    outer = level_aabbs(aabb, levels)[-1]
    o3, d3 = origins, directions
    t0, t1 = _slab(o3, d3, outer)
    t_lo = torch.maximum(t0, near)
    t_hi = torch.minimum(t1, far)
    valid = t_hi > t_lo
    t_start = t_lo + (jitter * step if jitter is not None else 0.0)
    out_r, out_s, out_e = [], [], []
    n = origins.shape[0]
    rays = torch.arange(n, device=origins.device)
    if cone_angle <= 0:
        k0 = 0
        while True:
            k = torch.arange(k0, k0 + chunk_steps, device=origins.device, dtype=torch.float32)
            t = t_start[:, None] + k[None, :] * step
            mid = t + 0.5 * step
            alive = valid[:, None] & (mid < t_hi[:, None])
            if not bool(alive.any()):
                break
            x = o3[:, None, :] + mid[..., None] * d3[:, None, :]
            keep = alive & occupied(x, binaries, aabb)
            r_idx, s_idx = keep.nonzero(as_tuple=True)
            out_r.append(rays[r_idx])
            out_s.append(t[r_idx, s_idx])
            out_e.append(t[r_idx, s_idx] + step)
            k0 += chunk_steps
    else:
        t = t_start.clone()
        while True:
            dt = (t * cone_angle).clamp(step, 1e10)
            mid = t + 0.5 * dt
            alive = valid & (mid < t_hi)
            if not bool(alive.any()):
                break
            x = o3 + mid[:, None] * d3
            keep = alive & occupied(x, binaries, aabb)
            out_r.append(rays[keep])
            out_s.append(t[keep])
            out_e.append((t + dt)[keep])
            t = t + dt
    if not out_r:
        empty = origins.new_zeros(0)
        return rays.new_zeros(0), empty, empty.clone()
    r = torch.cat(out_r)
    s = torch.cat(out_s)
    e = torch.cat(out_e)
    order = torch.argsort(r, stable=True)  # group by ray; steps were appended in order
    return r[order], s[order], e[order]


def _slab(o: torch.Tensor, d: torch.Tensor, box: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    tn, tf, hit = ray_aabb_intersect(o, d, box[None])
    # unclamped entry is not needed: marching starts at max(entry, near) with near >= 0
    t0 = torch.where(hit[:, 0], tn[:, 0], torch.full_like(tn[:, 0], float("inf")))
    t1 = torch.where(hit[:, 0], tf[:, 0], torch.full_like(tf[:, 0], float("-inf")))
    return t0, t1
