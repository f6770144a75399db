"""Torch twin of occupancy-grid marching.

Semantics (shared with the Rust marcher, which reproduces them exactly): samples are the steps
``t_k = t_start + k * dt`` (or ``t_{k+1} = t_k + max(step, cone_angle * t_k)``) whose
midpoint lies in an occupied cell of the finest level containing it.

:func:`march` is the GPU-shaped twin: a vectorised DDA (every ray's cell-face crossings of every
level, sorted, give the cells it crosses; occupied ones become candidate step ranges, expanded
and checked with the exact point lookup). :func:`march_steps` is the brute-force definition
(every step of every ray tested), kept as the test oracle.
"""

from __future__ import annotations

import math

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
    inside = (level < levels) & torch.isfinite(m)
    lvl = level.clamp(max=levels - 1)
    boxes = level_aabbs(aabb, levels)
    lo = boxes[:, :3]
    scale = res.to(x.dtype) / (boxes[:, 3:] - boxes[:, :3])
    f = torch.nan_to_num((x - lo[lvl]) * scale[lvl], nan=0.0, posinf=0.0, neginf=0.0)
    ijk = f.clamp_min(0).clamp_max(float(max(binaries.shape[1:]))).long()
    ijk = torch.minimum(ijk, res - 1)
    occ = binaries[lvl, ijk[..., 0], ijk[..., 1], ijk[..., 2]]
    return occ & inside


def march_steps(
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
    """Brute force: packed ``(ray_indices, t_starts, t_ends)`` of every occupied step."""
    levels = binaries.shape[0]
    outer = level_aabbs(aabb, levels)[-1]
    o3, d3 = origins, directions
    t0, t1 = slab(o3, d3, outer)
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


def slab(o: torch.Tensor, d: torch.Tensor, box: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    tn, tf, hit = ray_aabb_intersect(o, d, box[None])
    # unclamped entry is not needed: marching starts at max(entry, near) with near >= 0
    t0 = torch.where(hit[:, 0], tn[:, 0], torch.full_like(tn[:, 0], float("inf")))
    t1 = torch.where(hit[:, 0], tf[:, 0], torch.full_like(tf[:, 0], float("-inf")))
    return t0, t1


#: elements of the per-chunk [rays, crossings] tables of :func:`march` (memory bound)
CHUNK_ELEMENTS = 1 << 22


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
    chunk_elements: int = CHUNK_ELEMENTS,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Packed ``(ray_indices, t_starts, t_ends)`` of every occupied step, by a vectorised DDA.

    Per ray, the crossing times with every cell face of every level (``levels * sum(res + 1)``
    planes) are sorted: consecutive crossings bound the cells the ray traverses (what a DDA
    visits, computed for all cells at once). Each occupied cell yields the range of steps whose
    midpoints can lie in it (widened by one step against rounding); the candidates are expanded
    and kept when the exact point lookup (:func:`occupied`, the Rust arithmetic) says occupied,
    so the samples equal the brute-force definition bit for bit. No Python loop over rays or
    steps (rays are processed in chunks of ``chunk_elements`` table entries to bound memory).

    Host-device synchronisations (the output size is data dependent): one per chunk for the
    candidate count, one for the kept samples; with ``cone_angle > 0`` one more for the longest
    ray's step count (its step times follow the float32 recurrence exactly, one vectorised
    update per step index).
    """
    n = origins.shape[0]
    dev = origins.device
    levels = binaries.shape[0]
    res = list(binaries.shape[1:])
    boxes = level_aabbs(aabb, levels)
    t0, t1 = slab(origins, directions, boxes[-1])
    t_lo = torch.maximum(t0, near)
    t_hi = torch.minimum(t1, far)
    valid = t_hi > t_lo
    t_start = t_lo + (jitter * step if jitter is not None else 0.0)
    t_start = torch.where(valid, t_start, torch.zeros_like(t_start))
    t_hi = torch.where(valid, t_hi, torch.zeros_like(t_hi))
    n_planes = levels * sum(r + 1 for r in res) + 2
    chunk = max(1, chunk_elements // n_planes)
    mids = None
    if cone_angle > 0 and n:
        mids, times, dts = _cone_steps(t_start, t_hi, valid, step, cone_angle)
    out_r, out_s, out_e = [], [], []
    for c0 in range(0, n, chunk):
        sl = slice(c0, min(n, c0 + chunk))
        r, s, e = _march_chunk(
            origins[sl],
            directions[sl],
            t_start[sl],
            t_hi[sl],
            valid[sl],
            binaries,
            aabb,
            boxes,
            step,
            None if mids is None else (mids[sl], times[sl], dts[sl]),
        )
        out_r.append(r + c0)
        out_s.append(s)
        out_e.append(e)
    if not out_r:
        empty = origins.new_zeros(0)
        return torch.zeros(0, dtype=torch.long, device=dev), empty, empty.clone()
    return torch.cat(out_r), torch.cat(out_s), torch.cat(out_e)


def _cone_steps(t_start, t_hi, valid, step: float, cone_angle: float):
    """[R, K] step starts, sizes and midpoints of conical marching (the Rust float32 recurrence
    ``t += clamp(t * cone_angle, step, 1e10)``), K = the longest ray's step count (+1)."""
    # Upper bound on the step count: uniform steps up to step / cone_angle, then geometric.
    lo = float(t_start[valid].min()) if bool(valid.any()) else 0.0
    hi = float(t_hi[valid].max()) if bool(valid.any()) else 0.0
    knee = step / cone_angle
    k_uniform = max(0.0, (min(hi, knee) - lo) / step) + 1
    k_geo = math.log(max(hi, knee) / max(knee, lo, 1e-30)) / math.log1p(cone_angle) + 1
    k_max = int(math.ceil(k_uniform + max(k_geo, 0.0))) + 2
    times = t_start.new_empty(t_start.shape[0], k_max)
    dts = torch.empty_like(times)
    t = t_start.clone()
    for k in range(k_max):  # vectorised over rays: [R] float ops, no lookups, no sync
        dt = (t * cone_angle).clamp(step, 1e10)
        times[:, k] = t
        dts[:, k] = dt
        t = t + dt
    mids = times + 0.5 * dts
    mids = torch.where(valid[:, None], mids, torch.full_like(mids, float("inf")))
    return mids, times, dts


def _march_chunk(o, d, t_start, t_hi, valid, binaries, aabb, boxes, step: float, cone):
    dev = o.device
    res = binaries.shape[1:]
    # Crossing times of every face plane of every level, per axis.
    zero = d == 0
    inv = 1.0 / torch.where(zero, torch.ones_like(d), d)
    crossings = [t_start[:, None], t_hi[:, None]]
    for lv in range(boxes.shape[0]):
        lo, hi = boxes[lv, :3], boxes[lv, 3:]
        for a in range(3):
            i = torch.arange(res[a] + 1, device=dev, dtype=o.dtype)
            planes = lo[a] + (hi[a] - lo[a]) * (i / res[a])
            t = (planes[None, :] - o[:, a : a + 1]) * inv[:, a : a + 1]
            t = torch.where(zero[:, a : a + 1], torch.full_like(t, float("inf")), t)
            crossings.append(torch.minimum(torch.maximum(t, t_start[:, None]), t_hi[:, None]))
    ts = torch.sort(torch.cat(crossings, 1), dim=1).values
    a, b = ts[:, :-1], ts[:, 1:]
    mid = 0.5 * (a + b)
    x = o[:, None, :] + mid[..., None] * d[:, None, :]
    occ = occupied(x, binaries, aabb) & (b > a) & valid[:, None]
    # Candidate step range of each occupied cell (midpoints in [a, b], widened by one step).
    if cone is None:
        half = 0.5 * step
        k_lo = torch.ceil((a - t_start[:, None] - half) / step).long() - 1
        k_hi = torch.floor((b - t_start[:, None] - half) / step).long() + 1
    else:
        mids, _, _ = cone
        k_lo = torch.searchsorted(mids, a.contiguous()) - 1
        k_hi = torch.searchsorted(mids, b.contiguous(), right=True)
        k_hi = k_hi.clamp_max(mids.shape[1] - 1)
    k_lo = k_lo.clamp_min(0)
    k_hi = torch.where(occ, k_hi, torch.full_like(k_hi, -1))
    # Each step once: a cell's range starts after the previous cells' ranges (DDA order).
    prev = torch.cummax(k_hi, 1).values
    prev = torch.cat([torch.full_like(prev[:, :1], -1), prev[:, :-1]], 1)
    k_lo = torch.maximum(k_lo, prev + 1)
    counts = (k_hi - k_lo + 1).clamp_min(0).reshape(-1)
    total = int(counts.sum())  # data-dependent output size: one synchronisation
    if total == 0:
        empty = o.new_zeros(0)
        return torch.zeros(0, dtype=torch.long, device=dev), empty, empty.clone()
    seg = torch.repeat_interleave(torch.arange(counts.numel(), device=dev), counts, output_size=total)
    first = torch.cumsum(counts, 0) - counts
    k = k_lo.reshape(-1)[seg] + (torch.arange(total, device=dev) - first[seg])
    ray = seg // a.shape[1]
    if cone is None:
        t = t_start[ray] + k.to(o.dtype) * step
        t_mid = t + 0.5 * step
        t_end = t + step
    else:
        _, times, dts = cone
        t, dt = times[ray, k], dts[ray, k]
        t_mid = t + 0.5 * dt
        t_end = t + dt
    xs = o[ray] + t_mid[:, None] * d[ray]
    keep = (t_mid < t_hi[ray]) & occupied(xs, binaries, aabb)
    return ray[keep], t[keep], t_end[keep]
