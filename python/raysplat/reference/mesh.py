"""Pure-torch twin of the Rust mesh rasterizer (``raysplat-core``'s ``mesh`` module).

It follows the Rust kernel step by step: camera transform in float64, Sutherland-Hodgman
clipping against the near plane and a guard band, snapping to a 1/256-pixel grid, exact int64
edge functions with the top-left fill rule, and a z-buffer where the nearest surface wins and ties
go to the lower triangle id. Instead of tiles it expands every sub-triangle's pixel bounding box
into (triangle, pixel) pairs, in chunks, and reduces them per pixel. Inputs are expected to be
validated already (see :func:`raysplat.rasterize_mesh`).
"""

from __future__ import annotations

import numpy as np
import torch

SUBPIXEL_BITS = 8
SUB = 1 << SUBPIXEL_BITS
HALF = SUB // 2
GUARD_BAND = float(1 << 20)
MAX_SIZE = 1 << 16
MAX_POLY = 8


def _planes(p: torch.Tensor, k: torch.Tensor, w: float, h: float, near: float) -> torch.Tensor:
    """The five clip-plane values ``[..., 5]`` of camera-space points ``p [..., 3]``."""
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    u = k[0, 0] * x + k[0, 1] * y + k[0, 2] * z
    v = k[1, 0] * x + k[1, 1] * y + k[1, 2] * z
    g = GUARD_BAND
    return torch.stack([z - near, u + g * z, (w + g) * z - u, v + g * z, (h + g) * z - v], -1)


def _project(p: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Snapped fixed-point pixel coordinates (int64) of camera-space points."""
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    u = (k[0, 0] * x + k[0, 1] * y + k[0, 2] * z) / z
    v = (k[1, 0] * x + k[1, 1] * y + k[1, 2] * z) / z
    lim = (GUARD_BAND + MAX_SIZE + 1.0) * SUB

    def snap(c: torch.Tensor) -> torch.Tensor:
        return torch.floor(c * SUB + 0.5).clamp(-lim, lim).to(torch.int64)

    return snap(u), snap(v)


def _clip(
    p: torch.Tensor, w: torch.Tensor, k: torch.Tensor, wd: float, ht: float, near: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Clips triangles ``p [C, 3, 3]`` (weights ``w``) against the 5 planes; padded polygons."""
    c = p.shape[0]
    dev = p.device
    poly_p = torch.zeros(c, MAX_POLY, 3, dtype=p.dtype, device=dev)
    poly_w = torch.zeros_like(poly_p)
    poly_p[:, :3] = p
    poly_w[:, :3] = w
    n = torch.full((c,), 3, dtype=torch.int64, device=dev)
    j = torch.arange(MAX_POLY, device=dev)
    for pi in range(5):
        d = _planes(poly_p, k, wd, ht, near)[..., pi]  # [C, M]
        valid = j[None] < n[:, None]
        nj = (j[None] + 1) % n.clamp(min=1)[:, None]
        bp = torch.gather(poly_p, 1, nj[..., None].expand(-1, -1, 3))
        bw = torch.gather(poly_w, 1, nj[..., None].expand(-1, -1, 3))
        db = torch.gather(d, 1, nj)
        ina, inb = d >= 0, db >= 0
        keep = valid & ina
        cross = valid & (ina != inb)
        sel = ina[..., None]
        p_in, p_out = torch.where(sel, poly_p, bp), torch.where(sel, bp, poly_p)
        w_in, w_out = torch.where(sel, poly_w, bw), torch.where(sel, bw, poly_w)
        d_in, d_out = torch.where(ina, d, db), torch.where(ina, db, d)
        t = (d_in / torch.where(cross, d_in - d_out, torch.ones_like(d)))[..., None]
        cut_p = p_in + t * (p_out - p_in)
        cut_w = w_in + t * (w_out - w_in)
        cand_p = torch.stack([poly_p, cut_p], 2).reshape(c, 2 * MAX_POLY, 3)
        cand_w = torch.stack([poly_w, cut_w], 2).reshape(c, 2 * MAX_POLY, 3)
        mask = torch.stack([keep, cross], 2).reshape(c, 2 * MAX_POLY)
        order = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices[:, :MAX_POLY]
        poly_p = torch.gather(cand_p, 1, order[..., None].expand(-1, -1, 3))
        poly_w = torch.gather(cand_w, 1, order[..., None].expand(-1, -1, 3))
        n = mask.sum(1).clamp(max=MAX_POLY)
        n = torch.where(n < 3, torch.zeros_like(n), n)
    return poly_p, poly_w, n


def _reduce(pix: torch.Tensor, z: torch.Tensor, face: torch.Tensor, npix: int) -> torch.Tensor:
    """Mask of the per-pixel winners: smallest depth, then smallest face id."""
    best = torch.full((npix,), float("inf"), dtype=z.dtype, device=z.device)
    best = best.scatter_reduce(0, pix, z, "amin")
    tie = z == best[pix]
    big = torch.iinfo(torch.int64).max
    bf = torch.full((npix,), big, dtype=torch.int64, device=z.device)
    bf = bf.scatter_reduce(0, pix[tie], face[tie], "amin")
    return tie & (face == bf[pix])


def rasterize_mesh(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    viewmat: torch.Tensor,
    K: torch.Tensor,
    width: int,
    height: int,
    convention: str = "opengl",
    near: float = 1e-4,
    *,
    max_pairs: int = 1 << 22,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(triangle_id [H, W] int64, barycentrics [H, W, 3] float32, depth [H, W] float32)``.

    Arguments are rounded to float32 first (like the Rust path) and computed in float64.
    """
    dev = vertices.device
    f64 = torch.float64
    v = vertices.detach().to(torch.float32).to(f64)
    m = viewmat.detach().reshape(4, 4).to(torch.float32).to(f64)
    k = K.detach().reshape(3, 3).to(torch.float32).to(f64)
    faces = faces.detach().to(dev, torch.int64).reshape(-1, 3)
    near = float(np.float32(near))
    npix = width * height
    tid = torch.full((npix,), -1, dtype=torch.int64, device=dev)
    bary = torch.zeros(npix, 3, dtype=torch.float32, device=dev)
    depth = torch.full((npix,), float("inf"), dtype=torch.float32, device=dev)

    def done() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return tid.view(height, width), bary.view(height, width, 3), depth.view(height, width)

    if faces.shape[0] == 0:
        return done()
    # camera space, OpenCV axes; same operation order as the Rust kernel
    p = v[:, 0:1] * m[:3, 0] + v[:, 1:2] * m[:3, 1] + v[:, 2:3] * m[:3, 2] + m[:3, 3]
    if convention == "opengl":
        p = p * torch.tensor([1.0, -1.0, -1.0], dtype=f64, device=dev)
    wd, ht = float(width), float(height)
    inside = (_planes(p, k, wd, ht, near) >= 0).all(-1)
    eye = torch.eye(3, dtype=f64, device=dev)

    face_in = inside[faces].all(1)
    ids_a = torch.nonzero(face_in).squeeze(1)
    pa = p[faces[ids_a]]  # [A, 3, 3]
    wa = eye.expand(ids_a.shape[0], 3, 3)
    ids_c = torch.nonzero(~face_in).squeeze(1)
    poly_p, poly_w, n = _clip(p[faces[ids_c]], eye.expand(ids_c.shape[0], 3, 3), k, wd, ht, near)
    sub_p, sub_w, sub_f = [pa], [wa], [ids_a]
    for kk in range(MAX_POLY - 2):
        ok = n > kk + 2
        idx = torch.tensor([0, kk + 1, kk + 2], device=dev)
        sub_p.append(poly_p[ok][:, idx])
        sub_w.append(poly_w[ok][:, idx])
        sub_f.append(ids_c[ok])
    sp, sw, face = torch.cat(sub_p), torch.cat(sub_w), torch.cat(sub_f)
    x, y = _project(sp, k)
    z = sp[..., 2]
    area = (x[:, 1] - x[:, 0]) * (y[:, 2] - y[:, 0]) - (y[:, 1] - y[:, 0]) * (x[:, 2] - x[:, 0])
    flip = area < 0
    perm = torch.where(flip[:, None], torch.tensor([1, 0, 2], device=dev), torch.arange(3, device=dev))
    x, y, z = x.gather(1, perm), y.gather(1, perm), z.gather(1, perm)
    sw = sw.gather(1, perm[..., None].expand(-1, -1, 3))
    area = area.abs()
    px0 = torch.div(x.min(1).values - HALF + SUB - 1, SUB, rounding_mode="floor").clamp(min=0)
    px1 = torch.div(x.max(1).values - HALF, SUB, rounding_mode="floor").clamp(max=width - 1)
    py0 = torch.div(y.min(1).values - HALF + SUB - 1, SUB, rounding_mode="floor").clamp(min=0)
    py1 = torch.div(y.max(1).values - HALF, SUB, rounding_mode="floor").clamp(max=height - 1)
    keep = (area > 0) & (px0 <= px1) & (py0 <= py1)
    x, y, z, sw, face, area = x[keep], y[keep], z[keep], sw[keep], face[keep], area[keep]
    px0, px1, py0, py1 = px0[keep], px1[keep], py0[keep], py1[keep]
    iz = 1.0 / z
    nx = px1 - px0 + 1
    cnt = nx * (py1 - py0 + 1)
    # edges opposite vertex 0, 1, 2 and their top-left ownership bias
    ea, eb = [1, 2, 0], [2, 0, 1]
    dx, dy = x[:, eb] - x[:, ea], y[:, eb] - y[:, ea]
    bias = torch.where((dy < 0) | ((dy == 0) & (dx > 0)), 0, -1)

    wins: list[tuple[torch.Tensor, ...]] = []
    ends = torch.cumsum(cnt, 0).tolist()
    start, acc = 0, 0
    bounds = []
    for i, e in enumerate(ends):
        if e - acc > max_pairs and i > start:
            bounds.append((start, i))
            start, acc = i, ends[i - 1]
    bounds.append((start, len(ends)))
    for s, e in bounds:
        if s >= e:
            continue
        c = cnt[s:e]
        rep = torch.repeat_interleave(torch.arange(s, e, device=dev), c)
        offs = torch.cumsum(c, 0) - c
        local = torch.arange(rep.shape[0], device=dev) - offs[rep - s]
        lx, ly = local % nx[rep], local // nx[rep]
        ppx, ppy = px0[rep] + lx, py0[rep] + ly
        fx, fy = (ppx * SUB + HALF)[:, None], (ppy * SUB + HALF)[:, None]
        xa, ya = x[rep][:, ea], y[rep][:, ea]
        ev = dx[rep] * (fy - ya) - dy[rep] * (fx - xa)  # [P, 3]
        cov = ((ev + bias[rep]) >= 0).all(1)
        rep, ev, ppx, ppy = rep[cov], ev[cov], ppx[cov], ppy[cov]
        q = ev.to(torch.float64) * iz[rep]
        izp = (q[:, 0] + q[:, 1] + q[:, 2]) / area[rep].to(torch.float64)
        zp = 1.0 / izp
        pix = ppy * width + ppx
        win = _reduce(pix, zp, face[rep], npix)
        rep, q, pix, zp = rep[win], q[win], pix[win], zp[win]
        s_ = q[:, 0] + q[:, 1] + q[:, 2]
        wv = sw[rep]  # [P, 3 (sub vertex), 3 (face vertex)]
        b = (q[:, 0:1] / s_[:, None]) * wv[:, 0]
        b = b + (q[:, 1:2] / s_[:, None]) * wv[:, 1]
        b = b + (q[:, 2:3] / s_[:, None]) * wv[:, 2]
        wins.append((pix, zp, face[rep], b))
    if not wins:
        return done()
    pix, zp, fc, b = (torch.cat(t) for t in zip(*wins, strict=True))
    win = _reduce(pix, zp, fc, npix)
    pix = pix[win]
    tid[pix] = fc[win]
    depth[pix] = zp[win].to(torch.float32)
    bary[pix] = b[win].to(torch.float32)
    return done()
