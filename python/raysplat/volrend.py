"""Volume rendering on dense ``[n_rays, n_samples]`` or packed ``[N]`` samples.

Quadrature (nerfacc's, no epsilons): ``alpha_i = 1 - exp(-sigma_i * dt_i)``,
``T_i = exp(-sum_{j<i} sigma_j dt_j)``, ``w_i = T_i * alpha_i``, so ``sum_i w_i = 1 - T_final``.
CPU tensors run the Rust kernels (forward and backward, through the ``torch.autograd.Function``
classes below); other devices run the torch twins (:mod:`raysplat.reference.volrend`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from raysplat import _checks as chk
from raysplat import _core, _peers
from raysplat._checks import float_dtype_of, from_numpy, to_numpy
from raysplat.reference import volrend as ref
from raysplat.scan import Layout, nerfacc_packed_info, resolve_layout


def _grad(name: str, g: torch.Tensor | None, dtype: torch.dtype) -> np.ndarray | None:
    return None if g is None else to_numpy(name, g, dtype)


class WeightsFromDensity(torch.autograd.Function):
    """``(weights, trans, alphas)`` of flat ``sigma_dt`` on segments given by ``offsets``."""

    @staticmethod
    def forward(ctx, sigma_dt: torch.Tensor, offsets: np.ndarray | None, n_rays: int):
        ctx.set_materialize_grads(False)  # unused outputs get None, not zero tensors
        dt = float_dtype_of(sigma_dt)
        shape = sigma_dt.shape
        w, t, a = _core.weights_from_density(to_numpy("sigmas", sigma_dt, dt), offsets, n_rays)
        w, t, a = (from_numpy(x, shape) for x in (w, t, a))
        ctx.save_for_backward(t, a)
        ctx.offsets, ctx.n_rays, ctx.dt = offsets, n_rays, dt
        return w, t, a

    @staticmethod
    @once_differentiable
    def backward(ctx, v_weights, v_trans, v_alphas):
        t, a = ctx.saved_tensors
        dt = ctx.dt
        v_sigma_dt = _core.weights_from_density_backward(
            to_numpy("trans", t, dt),
            to_numpy("alphas", a, dt),
            _grad("v_weights", v_weights, dt),
            _grad("v_trans", v_trans, dt),
            _grad("v_alphas", v_alphas, dt),
            ctx.offsets,
            ctx.n_rays,
        )
        return from_numpy(v_sigma_dt, t.shape), None, None


class WeightsFromIntervals(torch.autograd.Function):
    """``(weights, trans, alphas)`` of flat intervals ``[t_starts, t_ends]`` with densities
    ``sigmas``; the optical thickness ``sigmas * (t_ends - t_starts)`` is formed in Rust."""

    @staticmethod
    def forward(ctx, t_starts, t_ends, sigmas, offsets: np.ndarray | None, n_rays: int):
        ctx.set_materialize_grads(False)  # unused outputs get None, not zero tensors
        dt = float_dtype_of(sigmas)
        shape = sigmas.shape
        w, t, a = _core.weights_from_intervals(
            to_numpy("t_starts", t_starts, dt),
            to_numpy("t_ends", t_ends, dt),
            to_numpy("sigmas", sigmas, dt),
            offsets,
            n_rays,
        )
        w, t, a = (from_numpy(x, shape) for x in (w, t, a))
        ctx.save_for_backward(t_starts, t_ends, sigmas, t, a)
        ctx.offsets, ctx.n_rays, ctx.dt = offsets, n_rays, dt
        return w, t, a

    @staticmethod
    @once_differentiable
    def backward(ctx, v_weights, v_trans, v_alphas):
        t_starts, t_ends, sigmas, t, a = ctx.saved_tensors
        dt = ctx.dt
        need_t = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        v_t0, v_t1, v_sigmas = _core.weights_from_intervals_backward(
            to_numpy("t_starts", t_starts, dt),
            to_numpy("t_ends", t_ends, dt),
            to_numpy("sigmas", sigmas, dt),
            to_numpy("trans", t, dt),
            to_numpy("alphas", a, dt),
            _grad("v_weights", v_weights, dt),
            _grad("v_trans", v_trans, dt),
            _grad("v_alphas", v_alphas, dt),
            need_t,
            ctx.offsets,
            ctx.n_rays,
        )
        shape = sigmas.shape
        return (
            from_numpy(v_t0, shape) if need_t else None,
            from_numpy(v_t1, shape) if need_t else None,
            from_numpy(v_sigmas, shape),
            None,
            None,
        )


class WeightsFromAlpha(torch.autograd.Function):
    """``(weights, trans)`` of flat ``alphas`` on segments given by ``offsets``."""

    @staticmethod
    def forward(ctx, alphas: torch.Tensor, offsets: np.ndarray | None, n_rays: int):
        ctx.set_materialize_grads(False)  # unused outputs get None, not zero tensors
        dt = float_dtype_of(alphas)
        a_np = to_numpy("alphas", alphas, dt)
        w, t = _core.weights_from_alpha(a_np, offsets, n_rays)
        w, t = from_numpy(w, alphas.shape), from_numpy(t, alphas.shape)
        ctx.save_for_backward(alphas, t)
        ctx.offsets, ctx.n_rays, ctx.dt = offsets, n_rays, dt
        return w, t

    @staticmethod
    @once_differentiable
    def backward(ctx, v_weights, v_trans):
        a, t = ctx.saved_tensors
        v_alphas = _core.weights_from_alpha_backward(
            to_numpy("alphas", a, ctx.dt),
            to_numpy("trans", t, ctx.dt),
            _grad("v_weights", v_weights, ctx.dt),
            _grad("v_trans", v_trans, ctx.dt),
            ctx.offsets,
            ctx.n_rays,
        )
        return from_numpy(v_alphas, t.shape), None, None


class Accumulate(torch.autograd.Function):
    """Per-ray sums of ``weights * values`` (``values`` may be ``None``)."""

    @staticmethod
    def forward(ctx, weights, values, n_rays, offsets, ray_indices, values_name="values"):
        dt = float_dtype_of(weights)
        w_np = to_numpy("weights", weights, dt)
        v_np = None if values is None else to_numpy(values_name, values, dt)
        channels = 1 if values is None else values.shape[-1]
        out = _core.accumulate(w_np, v_np, channels, n_rays, offsets, ray_indices)
        ctx.save_for_backward(weights, values)
        ctx.meta = (
            n_rays,
            offsets,
            ray_indices,
            channels,
            weights.shape,
            None if values is None else values.shape,
            dt,
            values_name,
        )
        return from_numpy(out, (n_rays, channels))

    @staticmethod
    @once_differentiable
    def backward(ctx, v_out):
        w, v = ctx.saved_tensors
        n_rays, offsets, ray_indices, channels, w_shape, v_shape, dt, values_name = ctx.meta
        v_weights, v_values = _core.accumulate_backward(
            to_numpy("weights", w, dt),
            None if v is None else to_numpy(values_name, v, dt),
            channels,
            n_rays,
            to_numpy("v_out", v_out, dt),
            offsets,
            ray_indices,
        )
        v_values = None if v is None else from_numpy(v_values, v_shape)
        return from_numpy(v_weights, w_shape), v_values, None, None, None, None


class VolumeRender(torch.autograd.Function):
    """Fused Rust volume rendering of intervals: ``(colors, opacities, depths, weights)`` from flat
    ``t_starts``, ``t_ends``, ``sigmas`` [N] and ``values`` [N, C]."""

    @staticmethod
    def forward(ctx, t_starts, t_ends, sigmas, values, offsets, n_rays):
        ctx.set_materialize_grads(False)  # unused outputs get None, not zero tensors
        dt = float_dtype_of(sigmas)
        channels = values.shape[-1]
        c, o, d, w = _core.render(
            to_numpy("t_starts", t_starts, dt),
            to_numpy("t_ends", t_ends, dt),
            to_numpy("sigmas", sigmas, dt),
            to_numpy("rgbs", values, dt),
            channels,
            offsets,
            n_rays,
        )
        weights = from_numpy(w, sigmas.shape)
        ctx.save_for_backward(t_starts, t_ends, sigmas, values, weights)
        ctx.meta = (offsets, n_rays, channels, dt)
        return (
            from_numpy(c, (n_rays, channels)),
            from_numpy(o, (n_rays, 1)),
            from_numpy(d, (n_rays, 1)),
            weights,
        )

    @staticmethod
    @once_differentiable
    def backward(ctx, v_colors, v_opacities, v_depths, v_weights):
        t_starts, t_ends, sigmas, values, weights = ctx.saved_tensors
        offsets, n_rays, channels, dt = ctx.meta
        need_t = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]

        def dense(name, g, shape):
            return to_numpy(name, g if g is not None else torch.zeros(shape, dtype=dt), dt)

        v_t0, v_t1, v_sigmas, v_values = _core.render_backward(
            to_numpy("t_starts", t_starts, dt),
            to_numpy("t_ends", t_ends, dt),
            to_numpy("sigmas", sigmas, dt),
            to_numpy("rgbs", values, dt),
            channels,
            to_numpy("weights", weights, dt),
            dense("v_colors", v_colors, (n_rays, channels)),
            dense("v_opacities", v_opacities, (n_rays, 1)),
            dense("v_depths", v_depths, (n_rays, 1)),
            _grad("v_weights", v_weights, dt),
            need_t,
            offsets,
            n_rays,
        )
        return (
            from_numpy(v_t0, t_starts.shape) if need_t else None,
            from_numpy(v_t1, t_ends.shape) if need_t else None,
            from_numpy(v_sigmas, sigmas.shape),
            from_numpy(v_values, values.shape),
            None,
            None,
        )


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
        return WeightsFromDensity.apply(sigma_dt, lay.offsets_np, lay.n_rays)
    return ref.weights_from_density(sigma_dt, lay.offsets_t)


def _nerfacc(lay: Layout, *tensors):
    """nerfacc for a packed layout on CUDA (``None``: Rust or the twin)."""
    if lay.offsets_np is None and lay.offsets_t is None:
        return None
    return _peers.select("nerfacc", *tensors, float32=True)


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
    if (nf := _nerfacc(lay, t_starts, t_ends, sigmas)) is not None:
        pi = nerfacc_packed_info(lay, sigmas.device)
        return nf.render_weight_from_density(t_starts, t_ends, sigmas, packed_info=pi)
    if rust:  # one fused kernel forms sigma * dt itself
        w, t, a = WeightsFromIntervals.apply(
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
    if (nf := _nerfacc(lay, alphas)) is not None:
        return nf.render_weight_from_alpha(alphas, packed_info=nerfacc_packed_info(lay, alphas.device))
    if rust:
        return WeightsFromAlpha.apply(alphas, lay.offsets_np, lay.n_rays)
    return ref.weights_from_alpha(alphas, lay.offsets_t)


def _accumulate(weights, values, lay: Layout, rust: bool, values_name: str = "values") -> torch.Tensor:
    if not rust:
        return ref.accumulate(weights, values, lay.ray_indices, lay.n_rays)
    w = weights.reshape(-1)
    v = None if values is None else values.reshape(w.shape[0], values.shape[-1])
    if lay.scatter:  # unsorted packed samples: reduce by ray index
        ri = chk.to_numpy("ray_indices", lay.ray_indices, torch.int64)
        return Accumulate.apply(w, v, lay.n_rays, None, ri, values_name)
    # packed (segment offsets) or dense [R, S] (offsets None: equal segments)
    return Accumulate.apply(w, v, lay.n_rays, lay.offsets_np, None, values_name)


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
    lay = resolve_layout("weights", weights, ray_indices, n_rays, rust=rust, allow_unsorted=True)
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
    if (nf := _nerfacc(lay, t_starts, t_ends, sigmas, rgbs)) is not None:
        # nerfacc's packed weights; its accumulate_along_rays is index_add, as the twin's
        pi = nerfacc_packed_info(lay, sigmas.device)
        weights, _, _ = nf.render_weight_from_density(t_starts, t_ends, sigmas, packed_info=pi)
        ri = lay.ray_indices
        if ri is None:
            ri = torch.repeat_interleave(
                torch.arange(lay.n_rays, device=sigmas.device), pi[:, 1], output_size=sigmas.shape[0]
            )
        colors = ref.accumulate(weights, rgbs, ri, lay.n_rays)
        opacities = ref.accumulate(weights, None, ri, lay.n_rays)
        depths = ref.accumulate(weights, (0.5 * (t_starts + t_ends))[..., None], ri, lay.n_rays)
    elif rust:  # one fused kernel (offsets None = dense, equal segments)
        colors, opacities, depths, weights = VolumeRender.apply(
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
