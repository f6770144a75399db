"""Torch twin of :func:`raysplat.project_to_views` (differentiable by torch autograd)."""

from __future__ import annotations

import torch


def project_to_views(
    points: torch.Tensor,
    view_ids: torch.Tensor,
    c2w: torch.Tensor,
    K: torch.Tensor,
    images: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Points [R, N, 3] into cameras ``view_ids`` [R, V] of ``c2w`` [M, 3, 4] / ``K`` [M, 3, 3];
    bilinear samples of ``images`` [M, H, W, C]: returns [R, N, V, C] and validity [R, N, V]."""
    m_cams, h, w, ch = images.shape
    r, n = points.shape[:2]
    v = view_ids.shape[1]
    ids = view_ids[:, None, :].expand(r, n, v)
    m = c2w[ids]  # [R, N, V, 3, 4]
    k = K[ids]
    d = points[:, :, None, :] - m[..., :, 3]
    c = (m[..., :, :3] * d[..., :, None]).sum(-2)  # c_i = sum_j R[j, i] d_j
    cz = c[..., 2]
    front = cz < 0
    safe = torch.where(front, cz, -torch.ones_like(cz))
    u = -k[..., 0, 0] * c[..., 0] / safe + k[..., 0, 2]
    vv = k[..., 1, 1] * c[..., 1] / safe + k[..., 1, 2]
    valid = front & (u >= 0) & (u <= w) & (vv >= 0) & (vv <= h)
    zero = torch.zeros_like(u)
    su = torch.where(valid, u - 0.5, zero).clamp(0, w - 1)  # invalid (even NaN) points -> 0
    sv = torch.where(valid, vv - 0.5, zero).clamp(0, h - 1)
    x0 = su.detach().floor().clamp(0, w - 1)
    y0 = sv.detach().floor().clamp(0, h - 1)
    fu, fv = su - x0, sv - y0
    x0l, y0l = x0.long(), y0.long()
    x1l, y1l = (x0l + 1).clamp(max=w - 1), (y0l + 1).clamp(max=h - 1)
    flat = images.reshape(m_cams * h * w, ch)
    base = ids * (h * w)

    def tap(yy: torch.Tensor, xx: torch.Tensor) -> torch.Tensor:
        return flat[(base + yy * w + xx).reshape(-1)].reshape(r, n, v, ch)

    out = (
        tap(y0l, x0l) * ((1 - fu) * (1 - fv))[..., None]
        + tap(y0l, x1l) * (fu * (1 - fv))[..., None]
        + tap(y1l, x0l) * ((1 - fu) * fv)[..., None]
        + tap(y1l, x1l) * (fu * fv)[..., None]
    )
    out = torch.where(valid[..., None], out, torch.zeros_like(out))
    return out, valid
