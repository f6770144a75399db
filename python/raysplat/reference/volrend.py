"""Torch twins of the volume-rendering kernels (nerfacc's quadrature, no epsilons)."""

from __future__ import annotations

import torch

from raysplat.reference.scan import scan


def weights_from_density(
    sigma_dt: torch.Tensor, offsets: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(weights, transmittance, alphas)`` from optical thickness ``sigma * dt``."""
    trans = torch.exp(-scan(sigma_dt, offsets, "sum", exclusive=True))
    alphas = 1.0 - torch.exp(-sigma_dt)
    return trans * alphas, trans, alphas


def weights_from_alpha(
    alphas: torch.Tensor, offsets: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(weights, transmittance)`` from per-sample opacities."""
    trans = scan(1.0 - alphas, offsets, "prod", exclusive=True)
    return trans * alphas, trans


def accumulate(
    weights: torch.Tensor,
    values: torch.Tensor | None,
    ray_indices: torch.Tensor | None,
    n_rays: int,
) -> torch.Tensor:
    """Per-ray sums of ``weights * values``: dense [R, S] (+ [R, S, C]) or packed [N] (+ [N, C])."""
    src = weights[..., None] if values is None else weights[..., None] * values
    if ray_indices is None:
        return src.sum(-2)
    out = src.new_zeros((n_rays, src.shape[-1]))
    return out.index_add(0, ray_indices, src)
