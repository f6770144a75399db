"""Autograd glue: one ``torch.autograd.Function`` per differentiable Rust kernel.

Each forward hands CPU tensors to ``raysplat._core`` as NumPy views and wraps the results
without copying; each backward calls the matching ``*_backward`` kernel. Private: the public,
validated API lives in the modules that import these.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from raysplat import _core
from raysplat._checks import float_dtype_of, from_numpy, to_numpy


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
    def backward(ctx, gw, gt, ga):
        t, a = ctx.saved_tensors
        dt = ctx.dt
        g = _core.weights_from_density_backward(
            to_numpy("trans", t, dt),
            to_numpy("alphas", a, dt),
            _grad("grad_weights", gw, dt),
            _grad("grad_trans", gt, dt),
            _grad("grad_alphas", ga, dt),
            ctx.offsets,
            ctx.n_rays,
        )
        return from_numpy(g, t.shape), None, None


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
    def backward(ctx, gw, gt, ga):
        t_starts, t_ends, sigmas, t, a = ctx.saved_tensors
        dt = ctx.dt
        need_t = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        g0, g1, gs = _core.weights_from_intervals_backward(
            to_numpy("t_starts", t_starts, dt),
            to_numpy("t_ends", t_ends, dt),
            to_numpy("sigmas", sigmas, dt),
            to_numpy("trans", t, dt),
            to_numpy("alphas", a, dt),
            _grad("grad_weights", gw, dt),
            _grad("grad_trans", gt, dt),
            _grad("grad_alphas", ga, dt),
            need_t,
            ctx.offsets,
            ctx.n_rays,
        )
        shape = sigmas.shape
        return (
            from_numpy(g0, shape) if need_t else None,
            from_numpy(g1, shape) if need_t else None,
            from_numpy(gs, shape),
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
    def backward(ctx, gw, gt):
        a, t = ctx.saved_tensors
        g = _core.weights_from_alpha_backward(
            to_numpy("alphas", a, ctx.dt),
            to_numpy("trans", t, ctx.dt),
            _grad("grad_weights", gw, ctx.dt),
            _grad("grad_trans", gt, ctx.dt),
            ctx.offsets,
            ctx.n_rays,
        )
        return from_numpy(g, t.shape), None, None


class Accumulate(torch.autograd.Function):
    """Per-ray sums of ``weights * values`` (``values`` may be ``None``)."""

    @staticmethod
    def forward(ctx, weights, values, n_rays, offsets, ray_indices):
        dt = float_dtype_of(weights)
        w_np = to_numpy("weights", weights, dt)
        v_np = None if values is None else to_numpy("values", values, dt)
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
        )
        return from_numpy(out, (n_rays, channels))

    @staticmethod
    @once_differentiable
    def backward(ctx, g_out):
        w, v = ctx.saved_tensors
        n_rays, offsets, ray_indices, channels, w_shape, v_shape, dt = ctx.meta
        gw, gv = _core.accumulate_backward(
            to_numpy("weights", w, dt),
            None if v is None else to_numpy("values", v, dt),
            channels,
            n_rays,
            to_numpy("grad_out", g_out, dt),
            offsets,
            ray_indices,
        )
        grad_v = None if v is None else from_numpy(gv, v_shape)
        return from_numpy(gw, w_shape), grad_v, None, None, None


class Scan(torch.autograd.Function):
    """Segmented inclusive / exclusive sum or product."""

    @staticmethod
    def forward(ctx, inputs, offsets, n_rays, op, exclusive):
        dt = float_dtype_of(inputs)
        x_np = to_numpy("inputs", inputs, dt)
        out = _core.scan(x_np, offsets, n_rays, op, exclusive)
        ctx.save_for_backward(inputs)
        ctx.meta = (offsets, n_rays, op, exclusive, dt, inputs.shape)
        return from_numpy(out, inputs.shape)

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        offsets, n_rays, op, exclusive, dt, shape = ctx.meta
        gx = _core.scan_backward(
            to_numpy("inputs", x, dt), to_numpy("grad", g, dt), offsets, n_rays, op, exclusive
        )
        return from_numpy(gx, shape), None, None, None, None


class OuterMeasure(torch.autograd.Function):
    """Mip-NeRF 360 outer measure, differentiable w.r.t. the proposal weights."""

    @staticmethod
    def forward(ctx, t_edges_prop, weights_prop, t_edges):
        dt = float_dtype_of(weights_prop)
        pe, pw, e = (
            to_numpy("t_edges_prop", t_edges_prop, dt),
            to_numpy("weights_prop", weights_prop, dt),
            to_numpy("t_edges", t_edges, dt),
        )
        n_rays = weights_prop.shape[0]
        out = _core.outer_measure(pe, pw, e, n_rays)
        ctx.save_for_backward(t_edges_prop, weights_prop, t_edges)
        ctx.meta = (n_rays, dt, weights_prop.shape)
        return from_numpy(out, (n_rays, t_edges.shape[-1] - 1))

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        pe, pw, e = ctx.saved_tensors
        n_rays, dt, shape = ctx.meta
        gw = _core.outer_measure_backward(
            to_numpy("t_edges_prop", pe, dt),
            to_numpy("weights_prop", pw, dt),
            to_numpy("t_edges", e, dt),
            n_rays,
            to_numpy("grad", g, dt),
        )
        return None, from_numpy(gw, shape), None


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
    def backward(ctx, g_color, g_opacity, g_depth, g_weights):
        t_starts, t_ends, sigmas, values, weights = ctx.saved_tensors
        offsets, n_rays, channels, dt = ctx.meta
        need_t = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]

        def grad(name, g, shape):
            return to_numpy(name, g if g is not None else torch.zeros(shape, dtype=dt), dt)

        g0, g1, gs, gv = _core.render_backward(
            to_numpy("t_starts", t_starts, dt),
            to_numpy("t_ends", t_ends, dt),
            to_numpy("sigmas", sigmas, dt),
            to_numpy("rgbs", values, dt),
            channels,
            to_numpy("weights", weights, dt),
            grad("grad_color", g_color, (n_rays, channels)),
            grad("grad_opacity", g_opacity, (n_rays, 1)),
            grad("grad_depth", g_depth, (n_rays, 1)),
            _grad("grad_weights", g_weights, dt),
            need_t,
            offsets,
            n_rays,
        )
        return (
            from_numpy(g0, t_starts.shape) if need_t else None,
            from_numpy(g1, t_ends.shape) if need_t else None,
            from_numpy(gs, sigmas.shape),
            from_numpy(gv, values.shape),
            None,
            None,
        )
