"""Multi-resolution hash-grid encoding (Instant-NGP, Müller et al. 2022, sec. 3).

Level ``l`` has resolution ``r_l``: a point ``x`` in [0, 1]^3 (clamped) is scaled to ``x * r_l``
and the ``F`` features of the 8 surrounding grid vertices ``(i, j, k)`` (``0 <= i, j, k <= r_l``)
are blended trilinearly. A vertex indexes level ``l``'s table of ``T`` rows densely,
``i + j (r_l + 1) + k (r_l + 1)^2``, when ``(r_l + 1)^3 <= T``, otherwise by the spatial hash
``(i * 1 ^ j * 2654435761 ^ k * 805459861) mod T`` (``T`` a power of two, uint32 arithmetic).
The encoding concatenates the levels: ``[N, L * F]``. CPU tensors run the Rust kernel
(``rust/core/src/hashgrid.rs``), other devices the torch twin
:func:`raysplat.reference.hashgrid.hashgrid_encode`. Gradients reach the table and, when ``x``
requires them (ProNeRF's learned sample positions), the points: the derivative of the trilinear
blend inside each point's cell (zero along an axis where the point is clamped).
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from raysplat import _checks as chk
from raysplat import _core
from raysplat.reference.hashgrid import hashgrid_encode as hashgrid_encode_torch


class HashGridEncode(torch.autograd.Function):
    """Rust forward / backward (to the table, and to the points when they require it)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, table: torch.Tensor, resolutions: list[int]):
        dt = chk.float_dtype_of(table)
        n_levels, table_size, n_feat = table.shape
        xs = chk.to_numpy("x", x, dt)
        out = _core.hashgrid_forward(xs, chk.to_numpy("table", table, dt), resolutions, table_size, n_feat)
        ctx.save_for_backward(x, table)
        ctx.meta = (resolutions, table.shape, dt)
        return chk.from_numpy(out, (x.shape[0], n_levels * n_feat))

    @staticmethod
    @once_differentiable
    def backward(ctx, v_out: torch.Tensor):
        x, table = ctx.saved_tensors
        resolutions, shape, dt = ctx.meta
        xs, gs = chk.to_numpy("x", x, dt), chk.to_numpy("v_out", v_out, dt)
        v_x = v_table = None
        if ctx.needs_input_grad[0]:
            ts = chk.to_numpy("table", table, dt)
            v_x = _core.hashgrid_backward_x(xs, ts, gs, resolutions, shape[1], shape[2])
            v_x = chk.from_numpy(v_x, x.shape).to(x.dtype)
        if ctx.needs_input_grad[1]:
            v_table = chk.from_numpy(_core.hashgrid_backward(xs, gs, resolutions, shape[1], shape[2]), shape)
        return v_x, v_table, None


def hashgrid_encode(x: torch.Tensor, table: torch.Tensor, resolutions: list[int]) -> torch.Tensor:
    """Multi-resolution hash-grid encoding (Instant-NGP) of points ``x`` [N, 3] in [0, 1]^3.

    Args:
        x: [N, 3] positions (clamped to the unit cube); differentiable (zero gradient where
            clamped).
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
        return HashGridEncode.apply(x, table, [int(r) for r in resolutions])
    return hashgrid_encode_torch(x, table, [int(r) for r in resolutions])
