"""Torch twins of the distance samplers and of the outer measure."""

from __future__ import annotations

import torch


def _contract(t: torch.Tensor) -> torch.Tensor:
    return torch.where(t <= 1, t, 2 - 1 / t.clamp_min(1e-30))


def _uncontract(s: torch.Tensor) -> torch.Tensor:
    return torch.where(s <= 1, s, 1 / (2 - s).clamp_min(torch.finfo(s.dtype).tiny))


def stratified_edges(
    t_near: torch.Tensor, t_far: torch.Tensor, n_samples: int, spacing: str, jitter: torch.Tensor | None
) -> torch.Tensor:
    """[R, S + 1] interval edges between ``t_near`` and ``t_far`` (see the Rust kernel)."""
    k = torch.arange(n_samples + 1, device=t_near.device, dtype=t_near.dtype)
    inv = 1.0 / n_samples
    s = (k * inv).expand(t_near.shape[0], -1)
    if jitter is not None:
        lo = torch.where(k == 0, torch.zeros_like(k), (k - 0.5) * inv)
        hi = torch.where(k == n_samples, torch.ones_like(k), (k + 0.5) * inv)
        s = lo + (hi - lo) * jitter
    near, far = t_near[:, None], t_far[:, None]
    if spacing == "linear":
        t = near + (far - near) * s
    elif spacing == "disparity":
        t = 1.0 / ((1.0 - s) / near + s / far)
    else:
        a, b = _contract(near), _contract(far)
        t = torch.minimum(torch.maximum(_uncontract(a + (b - a) * s), near), far)
    if jitter is None:
        t = torch.cat([near, t[:, 1:-1], far], 1)
    t = torch.maximum(t, near)
    return torch.minimum(torch.cummax(t, dim=1).values, far)


def _cdf(t_edges: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Normalised [R, B + 1] CDF; zero-mass rays use bin widths (uniform in t)."""
    total = weights.sum(-1, keepdim=True)
    widths = t_edges[:, 1:] - t_edges[:, :-1]
    width = widths.sum(-1, keepdim=True)
    uniform = ~(total > 0)
    use = torch.where(uniform, torch.where(width > 0, widths, torch.ones_like(widths)), weights)
    norm = use.sum(-1, keepdim=True)
    cdf = (use.cumsum(-1) / norm).clamp(max=1.0)
    cdf = torch.cat([torch.zeros_like(cdf[:, :1]), cdf[:, :-1], torch.ones_like(cdf[:, :1])], -1)
    return cdf


def _invert(t_edges: torch.Tensor, cdf: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    n_bins = cdf.shape[-1] - 1
    u = u.clamp(0.0, 1.0)
    bin_ = torch.searchsorted(cdf[:, 1:n_bins].contiguous(), u.contiguous(), right=True)
    c0, c1 = cdf.gather(1, bin_), cdf.gather(1, bin_ + 1)
    t0, t1 = t_edges.gather(1, bin_), t_edges.gather(1, bin_ + 1)
    denom = c1 - c0
    frac = torch.where(denom > 1e-10, ((u - c0) / denom.clamp_min(1e-30)).clamp(0, 1), 0.5)
    return t0 + frac * (t1 - t0)


def inverse_cdf(t_edges: torch.Tensor, weights: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """``F^{-1}(u)`` of each ray's piecewise-constant density."""
    return _invert(t_edges, _cdf(t_edges, weights), u)


def importance_sampling(
    t_edges: torch.Tensor, weights: torch.Tensor, n_samples: int, jitter: torch.Tensor | None
) -> torch.Tensor:
    """[R, n_samples + 1] edges around inverse-CDF samples at ``(k + b) / n``."""
    n_rays = t_edges.shape[0]
    k = torch.arange(n_samples, device=t_edges.device, dtype=t_edges.dtype)
    b = 0.5 if jitter is None else jitter.clamp(0, 1)[:, None]
    u = ((k + b) / n_samples).clamp(max=1.0).expand(n_rays, -1)
    t = inverse_cdf(t_edges, weights, u)
    t_min, t_max = t_edges[:, :1], t_edges[:, -1:]
    if n_samples == 1:
        return torch.cat([t_min, t_max], -1)
    mid = 0.5 * (t[:, 1:] + t[:, :-1])
    first = torch.maximum(t[:, :1] - 0.5 * (t[:, 1:2] - t[:, :1]), t_min)
    last = torch.minimum(t[:, -1:] + 0.5 * (t[:, -1:] - t[:, -2:-1]), t_max)
    return torch.cat([first, mid, last], -1)


def outer_measure(
    t_edges_prop: torch.Tensor, weights_prop: torch.Tensor, t_edges: torch.Tensor
) -> torch.Tensor:
    """Summed proposal weight over the proposal intervals overlapping each target interval."""
    p = weights_prop.shape[-1]
    cum = torch.cat([torch.zeros_like(weights_prop[:, :1]), weights_prop.cumsum(-1)], -1)
    pos = torch.searchsorted(t_edges_prop.contiguous(), t_edges.contiguous(), right=True)
    lo = (pos - 1).clamp(min=0)
    hi = pos.clamp(max=p)
    return cum.gather(1, hi[:, 1:]) - cum.gather(1, lo[:, :-1])
