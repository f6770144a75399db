"""Torch twins of the Gaussian-splatting kernels (gsplat semantics), differentiable by autograd.

Same stages and layouts as the Rust kernels: :func:`project` -> :func:`sh_colors` ->
:func:`bin_tiles` -> :func:`rasterize`. The compositing is vectorised per chunk of tiles
(tiles grouped by list length, padded, ``[tiles, list, 256 pixels]`` tensors), so memory stays
bounded by ``chunk_elems``.
"""

from __future__ import annotations

import math

import torch

TILE = 16
ALPHA_MAX = 0.99
ALPHA_MIN = 1.0 / 255.0
T_MIN = 1e-4
RADIUS_SIGMAS = 3.33

SH_C0 = 0.2820947917738781
SH_C1 = 0.4886025119029199
SH_C2 = (
    1.0925484305920792,
    -1.0925484305920792,
    0.31539156525252005,
    -1.0925484305920792,
    0.5462742152960396,
)
SH_C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)


def quat_to_rotmat(quats: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``[..., 3, 3]`` of (normalised here) wxyz quaternions ``[..., 4]``."""
    q = quats / quats.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    w, x, y, z = q.unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z),
        2 * (x * y - w * z),
        2 * (x * z + w * y),
        2 * (x * y + w * z),
        1 - 2 * (x * x + z * z),
        2 * (y * z - w * x),
        2 * (x * z - w * y),
        2 * (y * z + w * x),
        1 - 2 * (x * x + y * y),
    ]
    return torch.stack(rows, -1).reshape(q.shape[:-1] + (3, 3))


FISHEYE_EPS = 1e-7
CAMERA_MODELS = ("pinhole", "ortho", "fisheye")


def project_points(p, Ks, width, height, camera_model="pinhole"):
    """Pixel positions ``[C, N, 2]`` and covariance Jacobians ``[C, N, 2, 3]`` of camera-space
    points ``p [C, N, 3]`` (gsplat's ``persp_proj`` with its clamp, ``ortho_proj``, and
    ``fisheye_proj`` with its ``1e-7`` guards)."""
    fx, fy, cx, cy = (Ks[:, 0, 0, None], Ks[:, 1, 1, None], Ks[:, 0, 2, None], Ks[:, 1, 2, None])
    x, y, z = p.unbind(-1)
    zero = torch.zeros_like(z)
    if camera_model == "pinhole":
        tfx, tfy = 0.5 * width / fx, 0.5 * height / fy
        u0, v0 = x / z, y / z
        u = torch.minimum(torch.maximum(u0, -(cx / fx + 0.3 * tfx)), (width - cx) / fx + 0.3 * tfx)
        v = torch.minimum(torch.maximum(v0, -(cy / fy + 0.3 * tfy)), (height - cy) / fy + 0.3 * tfy)
        j = [fx / z, zero, -fx * u / z, zero, fy / z, -fy * v / z]
        means2d = torch.stack([fx * u0 + cx, fy * v0 + cy], -1)
    elif camera_model == "ortho":
        fxb, fyb = fx.expand_as(z), fy.expand_as(z)
        j = [fxb, zero, zero, zero, fyb, zero]
        means2d = torch.stack([fx * x + cx, fy * y + cy], -1)
    elif camera_model == "fisheye":
        eps = FISHEYE_EPS
        xy_len = torch.sqrt(x * x + y * y) + eps
        k = torch.atan2(xy_len, z + eps) / xy_len
        means2d = torch.stack([fx * x * k + cx, fy * y * k + cy], -1)
        x2, y2, xy = x * x + eps, y * y, x * y
        x2y2 = x2 + y2
        inv = 1.0 / (x2y2 + z * z)
        b = torch.atan2(xy_len, z) / xy_len / x2y2
        a = z * inv / x2y2
        j = [fx * (x2 * a + y2 * b), fx * xy * (a - b), -fx * x * inv]
        j += [fy * xy * (a - b), fy * (y2 * a + x2 * b), -fy * y * inv]
    else:
        raise ValueError(f"camera_model must be one of {', '.join(CAMERA_MODELS)}, got {camera_model!r}")
    return means2d, torch.stack(j, -1).reshape(z.shape + (2, 3))


def project(
    means,
    quats,
    scales,
    opacities,
    viewmats,
    Ks,
    width,
    height,
    near,
    far,
    eps2d,
    antialiased,
    camera_model="pinhole",
):
    """EWA projection: ``(means2d [C,N,2], conics [C,N,3], depths [C,N], radii [C,N,2] int32,
    compensations [C,N])``; culled pairs have radius 0 and zeros elsewhere."""
    rq = quat_to_rotmat(quats)
    m = rq * scales[:, None, :]
    sigma = m @ m.transpose(-1, -2)  # [N,3,3]
    r, t = viewmats[:, :3, :3], viewmats[:, :3, 3]
    p = torch.einsum("cij,nj->cni", r, means) + t[:, None, :]  # [C,N,3]
    sigc = torch.einsum("cij,njk,clk->cnil", r, sigma, r)  # [C,N,3,3]
    z = p[..., 2]
    zero = torch.zeros_like(z)
    means2d, j = project_points(p, Ks, width, height, camera_model)
    cov = j @ sigc @ j.transpose(-1, -2)
    a, b, c = cov[..., 0, 0], cov[..., 0, 1], cov[..., 1, 1]
    det0 = a * c - b * b
    ap, cp = a + eps2d, c + eps2d
    det = ap * cp - b * b
    ok = (z >= near) & (z <= far) & (det > 0)
    det_safe = torch.where(ok, det, torch.ones_like(det))
    comp = torch.where(ok & (det0 > 0), (det0.clamp_min(0) / det_safe).clamp_min(1e-30).sqrt(), zero)
    conics = torch.stack([cp / det_safe, -b / det_safe, ap / det_safe], -1)
    with torch.no_grad():
        opac = opacities[None, :] * (comp if antialiased else 1.0)
        ok = ok & (opac >= ALPHA_MIN)
        extend = torch.sqrt(2.0 * torch.log(opac.clamp_min(ALPHA_MIN) / ALPHA_MIN)).clamp_max(RADIUS_SIGMAS)
        rx = torch.ceil(extend * torch.sqrt(ap.clamp_min(0)))
        ry = torch.ceil(extend * torch.sqrt(cp.clamp_min(0)))
        mx, my = means2d.unbind(-1)
        ok = ok & ((rx > 0) | (ry > 0))
        ok = ok & (mx + rx > 0) & (mx - rx < width) & (my + ry > 0) & (my - ry < height)
        radii = torch.stack([rx, ry], -1).where(ok[..., None], torch.zeros_like(means2d)).to(torch.int32)
    keep = ok[..., None]
    return (
        means2d.where(keep, torch.zeros_like(means2d)),
        conics.where(keep, torch.zeros_like(conics)),
        z.where(ok, zero),
        radii,
        comp.where(ok, zero),
    )


def sh_basis(degree: int, dirs: torch.Tensor) -> torch.Tensor:
    """SH basis ``[..., (degree + 1)^2]`` at unit directions ``[..., 3]`` (3DGS order and signs)."""
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, SH_C0)]
    if degree >= 1:
        out += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        c = SH_C2
        out += [c[0] * x * y, c[1] * y * z, c[2] * (2 * zz - xx - yy), c[3] * x * z, c[4] * (xx - yy)]
    if degree >= 3:
        c = SH_C3
        out += [
            c[0] * y * (3 * xx - yy),
            c[1] * x * y * z,
            c[2] * y * (4 * zz - xx - yy),
            c[3] * z * (2 * zz - 3 * xx - 3 * yy),
            c[4] * x * (4 * zz - xx - yy),
            c[5] * z * (xx - yy),
            c[6] * x * (xx - 3 * yy),
        ]
    return torch.stack(out, -1)


def sh_colors(degree: int, coeffs: torch.Tensor, means: torch.Tensor, campos: torch.Tensor) -> torch.Tensor:
    """Raw SH colours ``[C, N, 3]`` (no offset) of ``coeffs [N, K, 3]`` seen from ``campos [C, 3]``."""
    dirs = means[None, :, :] - campos[:, None, :]
    dirs = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    nb = (degree + 1) ** 2
    return torch.einsum("cnk,nkd->cnd", sh_basis(degree, dirs), coeffs[:, :nb, :])


def bin_tiles(means2d, radii, depths, width, height):
    """``(isect_offsets [C*tiles+1], flatten_ids [M], tiles_per_gauss [C,N])``: intersections
    grouped by tile, sorted by depth then Gaussian index within a tile."""
    c_, n = depths.shape
    tw, th = -(-width // TILE), -(-height // TILE)
    nt = tw * th
    with torch.no_grad():
        m = means2d.reshape(-1, 2)
        r = radii.reshape(-1, 2).to(m.dtype)
        valid = (radii.reshape(-1, 2) > 0).any(-1)
        cx, cy, rx, ry = m[:, 0] / TILE, m[:, 1] / TILE, r[:, 0] / TILE, r[:, 1] / TILE
        x0 = torch.floor(cx - rx).clamp(0, tw).long()
        x1 = torch.ceil(cx + rx).clamp(0, tw).long()
        y0 = torch.floor(cy - ry).clamp(0, th).long()
        y1 = torch.ceil(cy + ry).clamp(0, th).long()
        x1, y1 = torch.maximum(x1, x0), torch.maximum(y1, y0)
        w = x1 - x0
        counts = torch.where(valid, w * (y1 - y0), torch.zeros_like(w))
        gid = torch.repeat_interleave(torch.arange(c_ * n, device=m.device), counts)
        starts = torch.cumsum(counts, 0) - counts
        local = torch.arange(gid.shape[0], device=m.device) - starts[gid]
        wg = w[gid].clamp_min(1)
        tx, ty = x0[gid] + local % wg, y0[gid] + local // wg
        tile = (gid // n) * nt + ty * tw + tx
        order = torch.sort(depths.reshape(-1)[gid], stable=True).indices
        order = order[torch.sort(tile[order], stable=True).indices]
        flatten_ids = gid[order]
        offsets = torch.zeros(c_ * nt + 1, dtype=torch.long, device=m.device)
        offsets[1:] = torch.cumsum(torch.bincount(tile, minlength=c_ * nt), 0)
    return offsets, flatten_ids, counts.reshape(c_, n).to(torch.int32)


def rasterize(
    means2d, conics, colors, opacities, offsets, flatten_ids, width, height, chunk_elems=1 << 22, absbuf=None
):
    """Front-to-back compositing: ``(colors [C,H,W,D], alphas [C,H,W,1])`` (no background).

    With ``absbuf`` (``[C*N, 2]``), the backward pass adds the per-pixel absolute 2D-mean
    gradients into it (gsplat's ``absgrad``)."""
    c_, n, d = colors.shape
    tw, th = -(-width // TILE), -(-height // TILE)
    nt = tw * th
    dev, dt = means2d.device, means2d.dtype
    m2, con = means2d.reshape(-1, 2), conics.reshape(-1, 3)
    col, op = colors.reshape(-1, d), opacities.reshape(-1)
    counts = offsets[1:] - offsets[:-1]
    tiles = torch.nonzero(counts > 0).flatten()
    tiles = tiles[torch.sort(counts[tiles], stable=True).indices]
    lengths = counts[tiles].tolist()
    pix = torch.arange(TILE * TILE, device=dev)
    out_idx, out_col, out_alpha = [], [], []
    i = 0
    while i < len(lengths):
        j = i + 1
        while j < len(lengths) and lengths[j] * (j + 1 - i) * TILE * TILE <= chunk_elems:
            j += 1
        tl, lmax = tiles[i:j], lengths[j - 1]
        i = j
        with torch.no_grad():
            k = torch.arange(lmax, device=dev)
            mask = k[None, :] < counts[tl][:, None]
            ids = flatten_ids[(offsets[tl][:, None] + k[None, :]).clamp_max(flatten_ids.numel() - 1)]
            ids = torch.where(mask, ids, torch.zeros_like(ids))
            tt = tl % nt
            px = ((tt % tw) * TILE)[:, None] + pix % TILE
            py = ((tt // tw) * TILE)[:, None] + pix // TILE
            inside = (px < width) & (py < height)
            pidx = (tl // nt)[:, None] * (height * width) + py * width + px
        mx = m2[ids, 0][:, :, None].expand(-1, -1, TILE * TILE)
        my = m2[ids, 1][:, :, None].expand(-1, -1, TILE * TILE)
        if absbuf is not None and means2d.requires_grad:
            mx = mx.clone()
            my = my.clone()
            _abs_hook(mx, absbuf, ids, mask, 0)
            _abs_hook(my, absbuf, ids, mask, 1)
        dx = mx - (px[:, None, :].to(dt) + 0.5)
        dy = my - (py[:, None, :].to(dt) + 0.5)
        a, b, c = (con[ids, q][:, :, None] for q in range(3))
        sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
        alpha = (op[ids][:, :, None] * torch.exp(-sigma)).clamp_max(ALPHA_MAX)
        with torch.no_grad():
            valid = mask[:, :, None] & inside[:, None, :] & (sigma >= 0) & (alpha >= ALPHA_MIN)
            incl = torch.cumprod(1.0 - torch.where(valid, alpha, torch.zeros_like(alpha)), 1)
            keep = valid & (incl > T_MIN)
        ak = torch.where(keep, alpha, torch.zeros_like(alpha))
        one_minus = 1.0 - ak
        cp = torch.cumprod(one_minus, 1)
        trans = torch.cat([torch.ones_like(cp[:, :1]), cp[:, :-1]], 1)
        w = ak * trans
        out_col.append(torch.einsum("tlp,tld->tpd", w, col[ids])[inside])
        out_alpha.append((1.0 - cp[:, -1])[inside])
        out_idx.append(pidx[inside])
    total = c_ * height * width
    img = torch.zeros(total, d, dtype=dt, device=dev)
    alp = torch.zeros(total, dtype=dt, device=dev)
    if out_idx:
        idx = torch.cat(out_idx)
        img = img.index_copy(0, idx, torch.cat(out_col))
        alp = alp.index_copy(0, idx, torch.cat(out_alpha))
    return img.reshape(c_, height, width, d), alp.reshape(c_, height, width, 1)


def _abs_hook(t: torch.Tensor, absbuf: torch.Tensor, ids, mask, axis: int) -> None:
    def hook(g):
        s = (g.abs().sum(-1) * mask).reshape(-1)
        absbuf[:, axis].index_add_(0, ids.reshape(-1), s.to(absbuf.dtype))

    t.register_hook(hook)


def brute_force(means2d, conics, colors, opacities, depths, radii, width, height):
    """Per-pixel loop over every Gaussian of the pixel's tile (test oracle): ``(colors, alphas)``."""
    c_, n, d = colors.shape
    img = torch.zeros(c_, height, width, d, dtype=colors.dtype)
    alp = torch.zeros(c_, height, width, 1, dtype=colors.dtype)
    for ci in range(c_):
        rects = []
        for g in range(n):
            rx, ry = (int(v) for v in radii[ci, g])
            if rx <= 0 and ry <= 0:
                rects.append(None)
                continue
            mx, my = (float(v) / TILE for v in means2d[ci, g])
            rects.append(
                (
                    math.floor(mx - rx / TILE),
                    math.ceil(mx + rx / TILE),
                    math.floor(my - ry / TILE),
                    math.ceil(my + ry / TILE),
                )
            )
        order = sorted(range(n), key=lambda g: (float(depths[ci, g]), g))
        for yy in range(height):
            for xx in range(width):
                tx, ty = xx // TILE, yy // TILE
                t = 1.0
                acc = torch.zeros(d, dtype=colors.dtype)
                for g in order:
                    r = rects[g]
                    if r is None or not (r[0] <= tx < r[1] and r[2] <= ty < r[3]):
                        continue
                    dx = float(means2d[ci, g, 0]) - (xx + 0.5)
                    dy = float(means2d[ci, g, 1]) - (yy + 0.5)
                    a, b, c = (float(v) for v in conics[ci, g])
                    sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
                    alpha = min(ALPHA_MAX, float(opacities[ci, g]) * math.exp(-sigma))
                    if sigma < 0 or alpha < ALPHA_MIN:
                        continue
                    if t * (1 - alpha) <= T_MIN:
                        break
                    acc += alpha * t * colors[ci, g]
                    t *= 1 - alpha
                img[ci, yy, xx] = acc
                alp[ci, yy, xx, 0] = 1 - t
    return img, alp
