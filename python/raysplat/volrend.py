"""Volume rendering on dense ``[n_rays, n_samples]`` or packed ``[N]`` samples.

Quadrature (nerfacc's, no epsilons): ``alpha_i = 1 - exp(-sigma_i * dt_i)``,
``T_i = exp(-sum_{j<i} sigma_j dt_j)``, ``w_i = T_i * alpha_i``, so ``sum_i w_i = 1 - T_final``.
CPU tensors run the Rust kernels (forward and backward); other devices run the torch twins.
"""

from __future__ import annotations

import torch

from raysplat import _checks as chk
from raysplat import _ops
from raysplat.reference import volrend as ref
from raysplat.scan import Layout, resolve_layout


def _check_intervals(t_starts, t_ends, sigmas, ray_indices, n_rays, rust: bool) -> Layout:
    # The Rust kernels check finiteness themselves (fused, parallel); the torch path checks here.
    chk.tensor("t_starts", t_starts, ndim=(1, 2), finite=not rust)
    chk.tensor("t_ends", t_ends, ndim=(1, 2), finite=not rust)
    chk.tensor("sigmas", sigmas, ndim=(1, 2), finite=not rust)
    chk.same_shape("t_starts", t_starts, "t_ends", t_ends)
    chk.same_shape("t_starts", t_starts, "sigmas", sigmas)
    chk.same_device(t_starts=t_starts, t_ends=t_ends, sigmas=sigmas, ray_indices=ray_indices)
    return resolve_layout("sigmas", sigmas, ray_indices, n_rays, rust=rust)


def _weights(sigma_dt: torch.Tensor, lay: Layout, rust: bool):
    if rust:
        return _ops.WeightsFromDensity.apply(sigma_dt, lay.offsets_np, lay.n_rays)
    return ref.weights_from_density(sigma_dt, lay.offsets_t)


def render_weight_from_density(
    t_starts: torch.Tensor,
    t_ends: torch.Tensor,
    sigmas: torch.Tensor,
    ray_indices: torch.Tensor | None = None,
    n_rays: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Compositing weights from densities.

    Args:
        t_starts, t_ends: interval bounds, dense [R, S] or packed [N].
        sigmas: densities, same shape.
        ray_indices: int64 [N], sorted, for packed samples (``None`` for dense input).
        n_rays: number of rays for packed samples (default: ``max(ray_indices) + 1``).

    Returns:
        ``(weights, transmittance, alphas)``, each shaped like ``sigmas``.
    """
    rust = chk.use_rust(t_starts, t_ends, sigmas, ray_indices)
    lay = _check_intervals(t_starts, t_ends, sigmas, ray_indices, n_rays, rust)
    if rust:  # one fused kernel forms sigma * dt itself
        w, t, a = _ops.WeightsFromIntervals.apply(
            t_starts.reshape(-1), t_ends.reshape(-1), sigmas.reshape(-1), lay.offsets_np, lay.n_rays
        )
        return w.reshape(sigmas.shape), t.reshape(sigmas.shape), a.reshape(sigmas.shape)
    return _weights(sigmas * (t_ends - t_starts), lay, rust)


def render_weight_from_alpha(
    alphas: torch.Tensor, ray_indices: torch.Tensor | None = None, n_rays: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Compositing weights from per-sample opacities: ``(weights, transmittance)``.

    ``T_i = prod_{j<i} (1 - alpha_j)``; the gradient is exact at ``alpha = 1`` (no division).
    """
    chk.same_device(alphas=alphas, ray_indices=ray_indices)
    rust = chk.use_rust(alphas, ray_indices)
    chk.tensor("alphas", alphas, ndim=(1, 2), finite=not rust)
    lay = resolve_layout("alphas", alphas, ray_indices, n_rays, rust=rust)
    if rust:
        return _ops.WeightsFromAlpha.apply(alphas, lay.offsets_np, lay.n_rays)
    return ref.weights_from_alpha(alphas, lay.offsets_t)


def _accumulate(weights, values, lay: Layout, rust: bool, values_name: str = "values") -> torch.Tensor:
    try:
        return _accumulate_impl(weights, values, lay, rust)
    except ValueError as err:
        if values_name != "values" and str(err).startswith("values:"):
            raise ValueError(values_name + str(err)[len("values") :]) from None
        raise


def _accumulate_impl(weights, values, lay: Layout, rust: bool) -> torch.Tensor:
    if not rust:
        return ref.accumulate(weights, values, lay.ray_indices, lay.n_rays)
    w = weights.reshape(-1)
    v = None if values is None else values.reshape(w.shape[0], values.shape[-1])
    if lay.offsets_np is not None:
        return _ops.Accumulate.apply(w, v, lay.n_rays, lay.offsets_np, None)
    if lay.ray_indices is not None:
        ri = chk.to_numpy("ray_indices", lay.ray_indices, torch.int64)
        return _ops.Accumulate.apply(w, v, lay.n_rays, None, ri)
    # dense [R, S]: equal segments
    return _ops.Accumulate.apply(w, v, lay.n_rays, None, None)


def accumulate_along_rays(
    weights: torch.Tensor,
    values: torch.Tensor | None = None,
    ray_indices: torch.Tensor | None = None,
    n_rays: int | None = None,
) -> torch.Tensor:
    """Per-ray sums ``sum_i w_i * v_i``.

    Args:
        weights: dense [R, S] or packed [N].
        values: [R, S, C] / [N, C], or ``None`` to sum the weights (C = 1).
        ray_indices: int64 [N] for packed samples; need not be sorted.
        n_rays: number of rays for packed samples.

    Returns:
        [R, C].
    """
    rust = chk.use_rust(weights, values, ray_indices)
    chk.tensor("weights", weights, ndim=(1, 2), finite=not rust)
    if values is not None:
        chk.tensor("values", values, ndim=weights.dim() + 1, finite=not rust)
        if tuple(values.shape[:-1]) != tuple(weights.shape):
            raise ValueError(
                f"values must have shape {tuple(weights.shape)} + [C], got {tuple(values.shape)}"
            )
    chk.same_device(weights=weights, values=values, ray_indices=ray_indices)
    if ray_indices is None:
        lay = resolve_layout("weights", weights, rust=rust)
    else:
        try:
            lay = resolve_layout("weights", weights, ray_indices, n_rays, rust=rust)
        except ValueError as err:
            if "sorted" not in str(err):
                raise
            # unsorted packed input: scatter by ray index
            chk.tensor("ray_indices", ray_indices, ndim=1, floating=False)
            ri = ray_indices.long()
            if n_rays is None:
                n_rays = int(ri.max()) + 1 if ri.numel() else 0
            if ri.numel() and (int(ri.min()) < 0 or int(ri.max()) >= n_rays):
                raise ValueError(f"ray_indices: values must lie in [0, {n_rays}) (n_rays)") from None
            lay = Layout(n_rays, None, None, ri)
    return _accumulate(weights, values, lay, rust)


def volume_render(
    t_starts: torch.Tensor,
    t_ends: torch.Tensor,
    sigmas: torch.Tensor,
    rgbs: torch.Tensor,
    ray_indices: torch.Tensor | None = None,
    n_rays: int | None = None,
    render_bkgd: torch.Tensor | None = None,
    expected_depth: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Renders colour, opacity and depth from densities and per-sample colours.

    Args:
        t_starts, t_ends, sigmas: dense [R, S] or packed [N].
        rgbs: per-sample colours (any channel count C), [R, S, C] or [N, C].
        ray_indices, n_rays: packed layout (sorted ``ray_indices``).
        render_bkgd: background colour [C] or [R, C], composited as ``(1 - opacity) * bkgd``.
        expected_depth: divide depth by opacity (mean depth of the visible samples).

    Returns:
        ``(colors [R, C], opacities [R, 1], depths [R, 1], weights)``; depth is
        ``sum_i w_i (t_start_i + t_end_i) / 2``.
    """
    rust = chk.use_rust(t_starts, t_ends, sigmas, rgbs, ray_indices, render_bkgd)
    chk.tensor("t_starts", t_starts, ndim=(1, 2), finite=not rust)
    chk.tensor("t_ends", t_ends, ndim=(1, 2), finite=not rust)
    chk.tensor("sigmas", sigmas, ndim=(1, 2), finite=not rust)
    chk.same_shape("t_starts", t_starts, "t_ends", t_ends)
    chk.same_shape("t_starts", t_starts, "sigmas", sigmas)
    chk.same_device(t_starts=t_starts, t_ends=t_ends, sigmas=sigmas, ray_indices=ray_indices)
    lay = resolve_layout("sigmas", sigmas, ray_indices, n_rays, rust=rust)
    chk.tensor("rgbs", rgbs, ndim=sigmas.dim() + 1, finite=not rust)
    if tuple(rgbs.shape[:-1]) != tuple(sigmas.shape):
        raise ValueError(f"rgbs must have shape {tuple(sigmas.shape)} + [C], got {tuple(rgbs.shape)}")
    chk.same_device(sigmas=sigmas, rgbs=rgbs, render_bkgd=render_bkgd)
    if rust:  # one fused kernel (offsets None = dense, equal segments)
        colors, opacities, depths, weights = _ops.VolumeRender.apply(
            t_starts.reshape(-1),
            t_ends.reshape(-1),
            sigmas.reshape(-1),
            rgbs.reshape(-1, rgbs.shape[-1]),
            lay.offsets_np,
            lay.n_rays,
        )
        weights = weights.reshape(sigmas.shape)
    else:
        weights, _, _ = _weights(sigmas * (t_ends - t_starts), lay, rust)
        colors = _accumulate(weights, rgbs, lay, rust, "rgbs")
        opacities = _accumulate(weights, None, lay, rust)
        depths = _accumulate(weights, (0.5 * (t_starts + t_ends))[..., None], lay, rust)
    if expected_depth:
        depths = depths / opacities.clamp_min(torch.finfo(opacities.dtype).eps)
    if render_bkgd is not None:
        chk.tensor("render_bkgd", render_bkgd, ndim=(1, 2), last=colors.shape[-1], finite=True)
        colors = colors + (1.0 - opacities) * render_bkgd
    return colors, opacities, depths, weights
