"""Torch twin of the radiance-distribution integration (NeRDF; see ``raysplat.distribution``).

Materialises the ``[.., S, 24]`` basis with ``sin`` / ``cos`` and composites with raysplat's
quadrature (``T = exp(-exclusive cumsum(sigma * delta))``); autograd gives the backward.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

N_BASIS = 24


def basis(taus: torch.Tensor) -> torch.Tensor:
    """``[..., 24]`` basis values at normalised depths ``taus`` ``[...]``: ``B_0 = 1``,
    ``B_{2m-1} = sin(2 pi m tau)`` (m = 1..12), ``B_{2m} = cos(2 pi m tau)`` (m = 1..11)."""
    m = torch.arange(1, 13, device=taus.device, dtype=taus.dtype)
    a = (2.0 * math.pi) * taus[..., None] * m
    out = taus.new_zeros(taus.shape + (N_BASIS,))
    out[..., 0] = 1.0
    out[..., 1::2] = torch.sin(a)
    out[..., 2::2] = torch.cos(a[..., :11])
    return out


def render_distribution(
    coeffs: torch.Tensor,
    taus: torch.Tensor,
    near: torch.Tensor,
    far: torch.Tensor,
    noise: torch.Tensor | None,
    sigma_activation: str,
    last_delta: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(colors [R, 3], opacities [R], depths [R], raw sigmas [R, S])`` of ``coeffs``
    ``[R, 4, 24]`` at ``taus`` ``[S]`` (shared) or ``[R, S]``; ``near`` / ``far`` ``[R]``."""
    b = basis(taus)
    if taus.dim() == 1:
        raw = torch.einsum("rck,sk->rsc", coeffs, b)
    else:
        raw = torch.einsum("rck,rsk->rsc", coeffs, b)
    t = near[:, None] + taus * (far - near)[:, None]
    if t.shape[1] > 1:
        delta = torch.cat([t[:, 1:] - t[:, :-1], torch.full_like(t[:, :1], last_delta)], dim=1)
    else:
        delta = torch.full_like(t, last_delta)
    raw_sigma = raw[..., 0]
    x = raw_sigma if noise is None else raw_sigma + noise
    sigma = F.relu(x) if sigma_activation == "relu" else F.softplus(x)
    s = sigma * delta
    # exclusive sum without subtracting s (the last s may be ~1e10 and would cancel digits)
    trans = torch.exp(-torch.cat([torch.zeros_like(s[:, :1]), torch.cumsum(s[:, :-1], dim=1)], dim=1))
    w = trans * (1.0 - torch.exp(-s))
    rgb = torch.sigmoid(raw[..., 1:])
    colors = (w[..., None] * rgb).sum(1)
    return colors, w.sum(1), (w * t).sum(1), raw_sigma
