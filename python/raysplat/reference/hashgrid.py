"""Pure-torch twin of the multi-resolution hash-grid encoding (Instant-NGP), any device.

Level ``l`` has resolution ``r_l``; a point ``x`` in [0, 1]^3 is scaled to ``x * r_l``, and the
features of the 8 surrounding grid vertices ``(i, j, k)`` (``0 <= i, j, k <= r_l``) are blended
trilinearly. A vertex indexes level ``l``'s table of ``T`` rows densely,
``i + j (r_l + 1) + k (r_l + 1)^2``, when ``(r_l + 1)^3 <= T``, otherwise by the spatial hash
``(i * 1 ^ j * 2654435761 ^ k * 805459861) mod T`` (``T`` a power of two; uint32 arithmetic).
"""

from __future__ import annotations

import torch

PRIMES = (1, 2654435761, 805459861)


def vertex_index(ijk: torch.Tensor, res: int, table_size: int) -> torch.Tensor:
    """Row of grid vertices ``ijk`` (int64 [..., 3]) in a level of resolution ``res``."""
    side = res + 1
    if side**3 <= table_size:
        return ijk[..., 0] + ijk[..., 1] * side + ijk[..., 2] * side * side
    h = (ijk[..., 0] * PRIMES[0]) ^ (ijk[..., 1] * PRIMES[1]) ^ (ijk[..., 2] * PRIMES[2])
    return h & (table_size - 1)


def hashgrid_encode(x: torch.Tensor, table: torch.Tensor, resolutions: list[int]) -> torch.Tensor:
    """Encodes points ``x`` [N, 3] (in [0, 1], clamped) with ``table`` [L, T, F]; returns [N, L * F]."""
    n_levels, table_size, n_feat = table.shape
    x = x.clamp(0.0, 1.0).to(table.dtype)
    out = []
    corners = torch.tensor(
        [[(c >> 2) & 1, (c >> 1) & 1, c & 1] for c in range(8)], device=x.device, dtype=torch.int64
    )
    for lvl, res in enumerate(resolutions):
        p = x * res
        p0 = p.floor().clamp(max=res - 1)
        f = p - p0
        ijk = p0.long()[:, None, :] + corners[None]  # [N, 8, 3]
        idx = vertex_index(ijk, res, table_size)  # [N, 8]
        cw = torch.where(corners[None].bool(), f[:, None, :], 1.0 - f[:, None, :]).prod(-1)  # [N, 8]
        feats = table[lvl][idx]  # [N, 8, F]
        out.append((cw[..., None] * feats).sum(1))
    return torch.cat(out, -1) if out else x.new_zeros((x.shape[0], 0))
