"""Distances along rays: stratified samples, inverse-CDF importance sampling (also mip-NeRF 360
proposal resampling) and mip-NeRF 360's interlevel loss.

All samplers return interval *edges* ``[n_rays, n_samples + 1]``; use ``edges[:, :-1]`` and
``edges[:, 1:]`` as ``t_starts`` / ``t_ends``. Random numbers are drawn with torch (optionally
from ``generator``), so a seed gives identical results on the Rust and torch paths.
"""

from __future__ import annotations

import math

import torch
from torch.autograd.function import once_differentiable

from raysplat import _checks as chk
from raysplat import _core, _peers
from raysplat.reference import sampling as ref


def _per_ray(name: str, v, n: int | None, device) -> torch.Tensor:
    if isinstance(v, torch.Tensor):
        chk.tensor(name, v, ndim=(0, 1, 2), finite=True)
        if v.dim() == 2:
            if v.shape[1] != 1:
                raise ValueError(f"{name} must have shape [R] or [R, 1], got {tuple(v.shape)}")
            v = v[:, 0]
        return v
    if not math.isfinite(float(v)):
        raise ValueError(f"{name} must be finite, got {float(v)}")
    return torch.full((n if n is not None else 1,), float(v), device=device)


def stratified_samples(
    t_near: torch.Tensor | float,
    t_far: torch.Tensor | float,
    n_samples: int,
    spacing: str = "linear",
    stratified: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Interval edges that split ``[t_near, t_far]`` into ``n_samples`` bins per ray.

    Args:
        t_near, t_far: [R] (or [R, 1]) per-ray bounds; floats broadcast.
        n_samples: intervals per ray.
        spacing: ``"linear"`` (uniform in t), ``"disparity"`` (uniform in 1/t, needs
            ``t_near > 0``) or ``"contracted"`` (uniform in mip-NeRF 360's contracted
            distance: linear up to 1, then in disparity).
        stratified: jitter every edge uniformly within its stratum (training); otherwise
            deterministic, evenly spaced edges.
        generator: random generator for the jitter.

    Returns:
        [R, n_samples + 1] sorted edges; the ends equal ``t_near`` / ``t_far`` when not
        stratified.
    """
    n_samples = chk.positive_int("n_samples", n_samples)
    spacing = chk.choice("spacing", spacing, ("linear", "disparity", "contracted"))
    ref_t = t_near if isinstance(t_near, torch.Tensor) else t_far if isinstance(t_far, torch.Tensor) else None
    device = ref_t.device if ref_t is not None else torch.device("cpu")
    near0 = _per_ray("t_near", t_near, None, device)
    far0 = _per_ray("t_far", t_far, None, device)
    n = max(near0.numel(), far0.numel())
    near = near0.expand(n) if near0.numel() == 1 else near0
    far = far0.expand(n) if far0.numel() == 1 else far0
    if near.shape != far.shape:
        raise ValueError(
            f"t_near and t_far must hold the same number of rays, got {near.shape[0]} and {far.shape[0]}"
        )
    chk.same_device(t_near=near, t_far=far)
    if bool((far < near).any()):
        raise ValueError("t_far must be >= t_near for every ray")
    if spacing == "disparity" and bool((near <= 0).any()):
        raise ValueError("disparity spacing needs t_near > 0")
    if spacing == "contracted" and bool((near < 0).any()):
        raise ValueError("contracted spacing needs t_near >= 0")
    jitter = None
    if stratified:
        jitter = torch.rand((n, n_samples + 1), generator=generator, device=near.device)
    if chk.use_rust(near, far):
        e = _core.stratified_edges(
            chk.to_numpy("t_near", near),
            chk.to_numpy("t_far", far),
            n_samples,
            spacing,
            None if jitter is None else chk.to_numpy("jitter", jitter),
        )
        return chk.from_numpy(e, (n, n_samples + 1))
    return ref.stratified_edges(near.float(), far.float(), n_samples, spacing, jitter)


def _histogram(
    t_edges: torch.Tensor,
    weights: torch.Tensor,
    values: bool = True,
    names: tuple[str, str] = ("t_edges", "weights"),
) -> None:
    """Shape checks, plus (``values``) finite / non-negative / sorted checks. The Rust kernels
    check values themselves inside their parallel loops, so their callers pass ``values=False``.
    ``names``: the arguments' names in error messages."""
    e_name, w_name = names
    chk.tensor(e_name, t_edges, ndim=2, finite=values)
    chk.tensor(w_name, weights, ndim=2, finite=values)
    chk.same_device(**{e_name: t_edges, w_name: weights})
    if weights.shape[1] < 1 or t_edges.shape != (weights.shape[0], weights.shape[1] + 1):
        raise ValueError(
            f"{e_name} must have shape [R, B + 1] for {w_name} [R, B], got {tuple(t_edges.shape)} "
            f"and {tuple(weights.shape)}"
        )
    if not values:
        return
    if bool((weights < 0).any()):
        raise ValueError(f"{w_name} must be non-negative")
    if bool((t_edges[:, 1:] < t_edges[:, :-1]).any()):
        raise ValueError(f"{e_name} must be sorted along each ray")


def importance_sampling(
    t_edges: torch.Tensor,
    weights: torch.Tensor,
    n_samples: int,
    stratified: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Resamples intervals by inverse-transform sampling of each ray's histogram.

    Sample ``k`` lies at ``F^{-1}((k + b) / n)`` with ``b = 0.5``, or one uniform ``b`` per ray
    when ``stratified`` (nerfacc / mip-NeRF 360); the new edges are midpoints between samples,
    the outer ones reflected and clipped to the original range. Rays whose weights are all zero
    fall back to uniform sampling. No gradient flows through the edges.

    Args:
        t_edges: [R, B + 1] sorted bin edges.
        weights: [R, B] non-negative bin weights (e.g. rendering or proposal weights).
        n_samples: number of new intervals per ray.

    Returns:
        [R, n_samples + 1] sorted edges.
    """
    n_samples = chk.positive_int("n_samples", n_samples)
    rust = chk.use_rust(t_edges, weights)
    _histogram(t_edges, weights, values=not rust)
    n = t_edges.shape[0]
    # nerfacc draws its own stratified jitter: it serves the calls without a generator
    nf = _peers.select("nerfacc", t_edges, weights, float32=True) if generator is None else None
    if nf is not None:
        return _nerfacc_importance_sampling(nf, t_edges, weights.detach(), n_samples, stratified)
    jitter = torch.rand((n,), generator=generator, device=t_edges.device) if stratified else None
    if rust:
        e = _core.importance_sampling(
            chk.to_numpy("t_edges", t_edges),
            chk.to_numpy("weights", weights),
            n,
            n_samples,
            None if jitter is None else chk.to_numpy("jitter", jitter),
        )
        return chk.from_numpy(e, (n, n_samples + 1))
    return ref.importance_sampling(t_edges.detach().float(), weights.detach().float(), n_samples, jitter)


def _nerfacc_importance_sampling(nf, t_edges, weights, n_samples: int, stratified: bool) -> torch.Tensor:
    """nerfacc's batched ``importance_sampling`` with raysplat's conventions: a ray whose weights
    are all zero samples uniformly in ``t`` (its CDF is made that of the bin widths)."""
    widths = t_edges[:, 1:] - t_edges[:, :-1]
    uniform = ~(weights.sum(-1, keepdim=True) > 0)
    fallback = torch.where(widths.sum(-1, keepdim=True) > 0, widths, torch.ones_like(widths))
    w = torch.where(uniform, fallback, weights.clamp_min(0))
    cdfs = torch.cat([torch.zeros_like(w[:, :1]), torch.cumsum(w, -1)], -1).contiguous()
    intervals = nf.RayIntervals(vals=t_edges.detach().contiguous())
    out, _ = nf.importance_sampling(intervals, cdfs, n_samples, stratified)
    return out.vals


def inverse_cdf(t_edges: torch.Tensor, weights: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """``t = F^{-1}(u)`` for each ray's piecewise-constant density.

    Args:
        t_edges: [R, B + 1] sorted bin edges.
        weights: [R, B] non-negative weights.
        u: [R, K] values in [0, 1] (clamped).

    Returns:
        [R, K] distances.
    """
    rust = chk.use_rust(t_edges, weights, u)
    _histogram(t_edges, weights, values=not rust)
    chk.tensor("u", u, ndim=2, finite=True)
    chk.same_device(t_edges=t_edges, u=u)
    if u.shape[0] != t_edges.shape[0]:
        raise ValueError(f"u must have one row per ray ({t_edges.shape[0]}), got {tuple(u.shape)}")
    if rust:
        t = _core.inverse_cdf(
            chk.to_numpy("t_edges", t_edges),
            chk.to_numpy("weights", weights),
            t_edges.shape[0],
            chk.to_numpy("u", u),
        )
        return chk.from_numpy(t, u.shape)
    return ref.inverse_cdf(t_edges.detach().float(), weights.detach().float(), u.float())


class OuterMeasure(torch.autograd.Function):
    """Mip-NeRF 360 outer measure, differentiable w.r.t. the proposal weights (Rust forward and
    backward)."""

    @staticmethod
    def forward(ctx, t_edges_prop, weights_prop, t_edges):
        dt = chk.float_dtype_of(weights_prop)
        pe, pw, e = (
            chk.to_numpy("t_edges_prop", t_edges_prop, dt),
            chk.to_numpy("weights_prop", weights_prop, dt),
            chk.to_numpy("t_edges", t_edges, dt),
        )
        n_rays = weights_prop.shape[0]
        out = _core.outer_measure(pe, pw, e, n_rays)
        ctx.save_for_backward(t_edges_prop, weights_prop, t_edges)
        ctx.meta = (n_rays, dt, weights_prop.shape)
        return chk.from_numpy(out, (n_rays, t_edges.shape[-1] - 1))

    @staticmethod
    @once_differentiable
    def backward(ctx, v_outer):
        pe, pw, e = ctx.saved_tensors
        n_rays, dt, shape = ctx.meta
        v_weights_prop = _core.outer_measure_backward(
            chk.to_numpy("t_edges_prop", pe, dt),
            chk.to_numpy("weights_prop", pw, dt),
            chk.to_numpy("t_edges", e, dt),
            n_rays,
            chk.to_numpy("v_outer", v_outer, dt),
        )
        return None, chk.from_numpy(v_weights_prop, shape), None


def interlevel_loss(
    t_edges_prop: torch.Tensor,
    weights_prop: torch.Tensor,
    t_edges: torch.Tensor,
    weights: torch.Tensor,
) -> torch.Tensor:
    """Mip-NeRF 360 proposal loss: ``mean(max(0, w - w_outer)^2 / (w + eps))``.

    ``w_outer`` sums the proposal weights of every proposal interval overlapping each NeRF
    interval (the outer measure). Gradients reach ``weights_prop`` only; the NeRF histogram
    ``(t_edges, weights)`` is treated as a constant. Sum the loss over proposal levels. Zero
    rays give a loss of 0 (not NaN).

    Args:
        t_edges_prop: [R, P + 1] proposal edges; weights_prop: [R, P].
        t_edges: [R, S + 1] NeRF edges; weights: [R, S].
    """
    chk.same_device(t_edges_prop=t_edges_prop, weights_prop=weights_prop, t_edges=t_edges, weights=weights)
    _histogram(t_edges_prop, weights_prop, names=("t_edges_prop", "weights_prop"))
    _histogram(t_edges, weights)
    if t_edges.shape[0] != t_edges_prop.shape[0]:
        raise ValueError("t_edges and t_edges_prop must hold the same number of rays")
    w = weights.detach()
    if w.numel() == 0:
        return (weights_prop.sum() * 0.0).to(w.dtype)
    if chk.use_rust(t_edges_prop, weights_prop, t_edges):
        w_outer = OuterMeasure.apply(t_edges_prop.detach(), weights_prop, t_edges.detach())
    else:
        w_outer = ref.outer_measure(t_edges_prop.detach(), weights_prop, t_edges.detach())
    eps = torch.finfo(torch.float32).eps
    return (torch.clamp(w - w_outer.to(w.dtype), min=0) ** 2 / (w + eps)).mean()
