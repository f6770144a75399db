"""Torch twins of the segmented scans and of ``pack_info``."""

from __future__ import annotations

import torch


def offsets_from_ray_indices(ray_indices: torch.Tensor, n_rays: int) -> torch.Tensor:
    """``[n_rays + 1]`` segment offsets of sorted ``ray_indices``."""
    counts = torch.bincount(ray_indices, minlength=n_rays)
    return torch.cat([counts.new_zeros(1), counts.cumsum(0)])


def _to_dense(x: torch.Tensor, offsets: torch.Tensor, fill: float):
    """Scatter a packed [N] tensor into [R, L] (padding with ``fill``); returns dense, (rows, cols)."""
    n_rays = offsets.numel() - 1
    counts = offsets[1:] - offsets[:-1]
    rows = torch.repeat_interleave(torch.arange(n_rays, device=x.device), counts, output_size=x.shape[0])
    cols = torch.arange(x.shape[0], device=x.device) - offsets[:-1][rows]
    # the padded width is the longest ray: data dependent, the one synchronisation here
    length = int(counts.max()) if n_rays > 0 and x.shape[0] > 0 else 0
    dense = x.new_full((n_rays, length), fill)
    dense = dense.index_put((rows, cols), x)
    return dense, (rows, cols)


def scan(x: torch.Tensor, offsets: torch.Tensor | None, op: str, exclusive: bool) -> torch.Tensor:
    """Inclusive / exclusive sum or product along dim 1 of dense [R, S] input, or per segment
    of packed [N] input described by ``offsets``."""
    identity = 0.0 if op == "sum" else 1.0
    if offsets is None:
        dense, idx = x, None
    else:
        dense, idx = _to_dense(x, offsets, identity)
    if exclusive:
        dense = torch.cat([torch.full_like(dense[:, :1], identity), dense[:, :-1]], dim=1)
    out = dense.cumsum(1) if op == "sum" else dense.cumprod(1)
    return out if idx is None else out[idx]
