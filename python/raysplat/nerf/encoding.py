"""Encodings of the radiance field: the learned multi-resolution hash grid (a module around
:func:`raysplat.hashgrid.hashgrid_encode`) and real spherical harmonics of view directions."""

from __future__ import annotations

import math

import torch

from raysplat.hashgrid import hashgrid_encode


class HashGrid(torch.nn.Module):
    """Learned multi-resolution hash grid: ``n_levels`` levels from ``base_res`` to ``max_res``
    (geometric), ``2^log2_table`` rows of ``n_feat`` features each, initialised U(-1e-4, 1e-4)."""

    def __init__(
        self,
        n_levels: int = 16,
        n_feat: int = 2,
        log2_table: int = 19,
        base_res: int = 16,
        max_res: int = 2048,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        scale = math.exp((math.log(max_res) - math.log(base_res)) / max(n_levels - 1, 1))
        self.resolutions = [int(math.floor(base_res * scale**lvl)) for lvl in range(n_levels)]
        t = torch.rand((n_levels, 2**log2_table, n_feat), generator=generator) * 2e-4 - 1e-4
        self.table = torch.nn.Parameter(t)
        self.out_dim = n_levels * n_feat

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, 3] in [0, 1] -> [N, L * F]."""
        return hashgrid_encode(x, self.table, self.resolutions)


def sh_encode(d: torch.Tensor, degree: int = 4) -> torch.Tensor:
    """Real spherical harmonics (degree 1-4 -> 1, 4, 9, 16 values) of unit directions [N, 3]."""
    x, y, z = d.unbind(-1)
    out = [torch.full_like(x, 0.28209479177387814)]
    if degree > 1:
        out += [-0.48860251190291987 * y, 0.48860251190291987 * z, -0.48860251190291987 * x]
    if degree > 2:
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
        out += [
            1.0925484305920792 * xy,
            -1.0925484305920792 * yz,
            0.94617469575755997 * zz - 0.31539156525251999,
            -1.0925484305920792 * xz,
            0.54627421529603959 * (xx - yy),
        ]
    if degree > 3:
        out += [
            0.59004358992664352 * y * (-3.0 * xx + yy),
            2.8906114426405538 * xy * z,
            0.45704579946446572 * y * (1.0 - 5.0 * zz),
            0.3731763325901154 * z * (5.0 * zz - 3.0),
            0.45704579946446572 * x * (1.0 - 5.0 * zz),
            1.4453057213202769 * z * (xx - yy),
            0.59004358992664352 * x * (-xx + 3.0 * yy),
        ]
    return torch.stack(out, -1)
