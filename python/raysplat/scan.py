"""Packed ("ragged") sample layout helpers and segmented scans with gradients.

Per-ray samples come either dense, as ``[n_rays, n_samples]`` tensors, or packed, as flat
``[N]`` tensors plus ``ray_indices`` (sorted, the ray of each sample) and ``n_rays`` — the
layout nerfacc's ``OccGridEstimator`` produces. ``packed_info`` ``[n_rays, 2]`` holds each
ray's (start, count).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from raysplat import _checks as chk
from raysplat import _core, _peers
from raysplat.reference import scan as ref


@dataclass(frozen=True)
class Layout:
    """How a batch of samples maps to rays (resolved once per call)."""

    n_rays: int
    #: [n_rays + 1] segment offsets (packed); None for dense [n_rays, S] input.
    offsets_np: np.ndarray | None
    offsets_t: torch.Tensor | None
    #: the original ray_indices when given (packed input)
    ray_indices: torch.Tensor | None
    #: packed samples whose ``ray_indices`` are not sorted (only with ``allow_unsorted``): there
    #: are no segment offsets, reductions scatter along ``ray_indices`` instead.
    scatter: bool = False


def resolve_layout(
    name: str,
    x: torch.Tensor,
    ray_indices: torch.Tensor | None = None,
    n_rays: int | None = None,
    packed_info: torch.Tensor | None = None,
    rust: bool = True,
    allow_unsorted: bool = False,
) -> Layout:
    """Validates a dense or packed batch and computes its segment offsets.

    Unsorted ``ray_indices`` are an error naming them, unless ``allow_unsorted``: then the
    layout says ``scatter=True`` (for reductions that accept any order).
    """
    if ray_indices is None and packed_info is None:
        if x.dim() != 2:
            raise ValueError(
                f"{name} must be dense [n_rays, n_samples] (or pass ray_indices / packed_info for "
                f"packed [N] samples), got shape {tuple(x.shape)}"
            )
        return Layout(x.shape[0], None, None, None)
    if x.dim() != 1:
        raise ValueError(f"packed {name} must be 1-D [N], got shape {tuple(x.shape)}")
    if packed_info is not None:
        chk.tensor("packed_info", packed_info, ndim=2, last=2, floating=False)
        chk.same_device(**{name: x, "packed_info": packed_info})
        starts, counts = packed_info[:, 0].long(), packed_info[:, 1].long()
        offsets = torch.cat([starts.new_zeros(1), counts.cumsum(0)])
        if (
            bool((counts < 0).any())
            or not torch.equal(offsets[:-1], starts)
            or int(offsets[-1]) != x.shape[0]
        ):
            raise ValueError(
                "packed_info must describe contiguous segments (start[i+1] = start[i] + count[i]) "
                f"covering all {x.shape[0]} samples"
            )
        off_np = chk.to_numpy("packed_info", offsets, torch.int64) if rust else None
        return Layout(packed_info.shape[0], off_np, offsets, None)
    chk.tensor("ray_indices", ray_indices, ndim=1, floating=False)
    chk.same_device(**{name: x, "ray_indices": ray_indices})
    if ray_indices.shape[0] != x.shape[0]:
        raise ValueError(
            f"ray_indices has {ray_indices.shape[0]} entries but {name} has {x.shape[0]} samples"
        )
    ray_indices = ray_indices.long()
    if n_rays is None:
        n_rays = int(ray_indices.max()) + 1 if ray_indices.numel() else 0
    n_rays = chk.positive_int("n_rays", n_rays, minimum=0)
    if rust:
        ri_np = chk.to_numpy("ray_indices", ray_indices, torch.int64)
        off_np = _core.segment_offsets(ri_np, n_rays, allow_unsorted)
        return Layout(n_rays, off_np, None, ray_indices, scatter=off_np is None)
    if ray_indices.numel():
        if int(ray_indices.min()) < 0 or int(ray_indices.max()) >= n_rays:
            raise ValueError(f"ray_indices: values must lie in [0, {n_rays}) (n_rays)")
        if bool((ray_indices[1:] < ray_indices[:-1]).any()):
            if allow_unsorted:
                return Layout(n_rays, None, None, ray_indices, scatter=True)
            raise ValueError("ray_indices: must be sorted in ascending order")
    return Layout(n_rays, None, ref.offsets_from_ray_indices(ray_indices, n_rays), ray_indices)


def pack_info(ray_indices: torch.Tensor, n_rays: int | None = None) -> torch.Tensor:
    """``[n_rays, 2]`` int64 (start, count) of each ray's samples in sorted ``ray_indices``."""
    chk.tensor("ray_indices", ray_indices, ndim=1, floating=False)
    x = torch.empty(ray_indices.shape[0], device=ray_indices.device)
    lay = resolve_layout("ray_indices", x, ray_indices, n_rays, rust=chk.use_rust(ray_indices))
    offsets = torch.from_numpy(lay.offsets_np) if lay.offsets_np is not None else lay.offsets_t
    return torch.stack([offsets[:-1], offsets[1:] - offsets[:-1]], -1)


class Scan(torch.autograd.Function):
    """Segmented inclusive / exclusive sum or product (Rust forward and backward)."""

    @staticmethod
    def forward(ctx, inputs, offsets, n_rays, op, exclusive):
        dt = chk.float_dtype_of(inputs)
        x_np = chk.to_numpy("inputs", inputs, dt)
        out = _core.scan(x_np, offsets, n_rays, op, exclusive)
        ctx.save_for_backward(inputs)
        ctx.meta = (offsets, n_rays, op, exclusive, dt, inputs.shape)
        return chk.from_numpy(out, inputs.shape)

    @staticmethod
    @once_differentiable
    def backward(ctx, v_outputs):
        (x,) = ctx.saved_tensors
        offsets, n_rays, op, exclusive, dt, shape = ctx.meta
        v_inputs = _core.scan_backward(
            chk.to_numpy("inputs", x, dt),
            chk.to_numpy("v_outputs", v_outputs, dt),
            offsets,
            n_rays,
            op,
            exclusive,
        )
        return chk.from_numpy(v_inputs, shape), None, None, None, None


def nerfacc_packed_info(lay: Layout, device: torch.device) -> torch.Tensor | None:
    """nerfacc's int64 ``packed_info`` [n_rays, 2] of a packed layout (``None`` when dense)."""
    if lay.offsets_t is not None:
        off = lay.offsets_t
    elif lay.offsets_np is not None:
        off = torch.from_numpy(lay.offsets_np).to(device)
    else:
        return None
    off = off.long()
    return torch.stack([off[:-1], off[1:] - off[:-1]], -1).contiguous()


def _scan(inputs, packed_info, ray_indices, n_rays, op: str, exclusive: bool) -> torch.Tensor:
    rust = chk.use_rust(inputs, packed_info, ray_indices)
    chk.tensor("inputs", inputs, ndim=(1, 2), finite=not rust)
    lay = resolve_layout("inputs", inputs, ray_indices, n_rays, packed_info, rust=rust)
    if not lay.scatter and (lay.offsets_np is not None or lay.offsets_t is not None):
        nf = _peers.select("nerfacc", inputs, float32=True)
        if nf is not None:  # nerfacc's packed CUDA scans
            name = f"{'exclusive' if exclusive else 'inclusive'}_{op}"
            return getattr(nf, name)(inputs, packed_info=nerfacc_packed_info(lay, inputs.device))
    if rust:
        return Scan.apply(inputs, lay.offsets_np, lay.n_rays, op, exclusive)
    return ref.scan(inputs, lay.offsets_t, op, exclusive)


def inclusive_sum(inputs, packed_info=None, ray_indices=None, n_rays=None) -> torch.Tensor:
    """Per-ray running sum (dense [R, S] or packed [N] with ``packed_info`` / ``ray_indices``)."""
    return _scan(inputs, packed_info, ray_indices, n_rays, "sum", False)


def exclusive_sum(inputs, packed_info=None, ray_indices=None, n_rays=None) -> torch.Tensor:
    """Per-ray running sum that excludes the current sample (starts at 0)."""
    return _scan(inputs, packed_info, ray_indices, n_rays, "sum", True)


def inclusive_prod(inputs, packed_info=None, ray_indices=None, n_rays=None) -> torch.Tensor:
    """Per-ray running product."""
    return _scan(inputs, packed_info, ray_indices, n_rays, "prod", False)


def exclusive_prod(inputs, packed_info=None, ray_indices=None, n_rays=None) -> torch.Tensor:
    """Per-ray running product that excludes the current sample (starts at 1)."""
    return _scan(inputs, packed_info, ray_indices, n_rays, "prod", True)
