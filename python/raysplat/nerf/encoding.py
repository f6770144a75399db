"""Encodings of the radiance field: the multi-resolution hash grid (Rust on CPU, torch twin
elsewhere) and real spherical harmonics of view directions."""

from __future__ import annotations

import math

import torch
from torch.autograd.function import once_differentiable

from raysplat import _checks as chk
from raysplat import _core
from raysplat.reference.hashgrid import hashgrid_encode as hashgrid_encode_torch


class _HashGridFn(torch.autograd.Function):
    """Rust forward / backward; gradients reach the table only (positions are constants)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, table: torch.Tensor, resolutions: list[int]):
        dt = chk.float_dtype_of(table)
        n_levels, table_size, n_feat = table.shape
        xs = chk.to_numpy("x", x, dt)
        out = _core.hashgrid_forward(xs, chk.to_numpy("table", table, dt), resolutions, table_size, n_feat)
        ctx.save_for_backward(x)
        ctx.meta = (resolutions, table.shape, dt)
        return chk.from_numpy(out, (x.shape[0], n_levels * n_feat))

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        (x,) = ctx.saved_tensors
        resolutions, shape, dt = ctx.meta
        g = _core.hashgrid_backward(
            chk.to_numpy("x", x, dt), chk.to_numpy("grad_out", grad_out, dt), resolutions, shape[1], shape[2]
        )
        return None, chk.from_numpy(g, shape), None


def hashgrid_encode(x: torch.Tensor, table: torch.Tensor, resolutions: list[int]) -> torch.Tensor:
    """Multi-resolution hash-grid encoding (Instant-NGP) of points ``x`` [N, 3] in [0, 1]^3.

    Args:
        x: [N, 3] positions (clamped to the unit cube). No gradient flows to ``x``.
        table: [L, T, F] feature tables (``T`` a power of two), float32 or float64.
        resolutions: L per-level resolutions.

    Returns:
        [N, L * F] features; CPU tensors run the Rust kernel, others the torch twin
        (:func:`raysplat.reference.hashgrid.hashgrid_encode`).
    """
    chk.tensor("x", x, ndim=2, last=3)
    chk.tensor("table", table, ndim=3)
    if len(resolutions) != table.shape[0]:
        raise ValueError(
            f"resolutions must hold {table.shape[0]} values (one per level), got {len(resolutions)}"
        )
    chk.same_device(x=x, table=table)
    if chk.use_rust(x, table):
        return _HashGridFn.apply(x.detach(), table, [int(r) for r in resolutions])
    return hashgrid_encode_torch(x.detach(), table, [int(r) for r in resolutions])


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
