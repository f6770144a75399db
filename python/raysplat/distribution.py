"""Radiance-distribution integration: NeRDF's one-network-pass-per-ray rendering.

NeRDF (Wu et al., "NeRDF: Neural Radiance Distribution Field for Efficient View Synthesis",
ICCV 2023; code ``yushuang-wu/NeRDF``, ``utils/gauss_lib.py::gauss_dft``) predicts, per ray, a
real Fourier series of density and colour over the normalised depth
``tau = (t - near) / (far - near)``. ``coeffs`` ``[R, 4, 24]`` holds the coefficients of the
channels (sigma, r, g, b) in the released code's basis order::

    B_0 = 1,  B_{2m-1}(tau) = sin(2 pi m tau) (m = 1..12),  B_{2m}(tau) = cos(2 pi m tau) (m = 1..11)
    raw_ch(tau) = sum_i coeffs[:, ch, i] B_i(tau)
    sigma(tau) = act(raw_sigma(tau) + noise)        (act: relu, the paper's, or softplus)
    c(tau) = sigmoid(raw_rgb(tau))

The basis has period 1, so ``raw(near) == raw(far)`` for every ray and any coefficients (a
property of the paper's representation, kept as is).

The series is evaluated at ``S`` samples: at test time ``tau = linspace(0, 1, S)`` (the paper's
``z = linspace(near, far, S)``); in training stratified as nerf-pytorch perturbs that grid (each
sample uniform between the midpoints of its neighbours). It is composited with raysplat's
quadrature (no epsilon): ``delta_j = t_{j+1} - t_j``, the last interval ``last_delta`` (the
paper's ``1e10``: the last sample absorbs what is left), ``alpha = 1 - exp(-sigma delta)``,
``w_j = T_j alpha_j``. CPU tensors run one fused Rust kernel forward and one backward (w.r.t.
``coeffs``; the basis by recurrence, nothing ``[R, S, 24]``-sized in memory); other devices run
the torch twin :mod:`raysplat.reference.distribution`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from raysplat import _checks as chk
from raysplat import _core
from raysplat.reference import distribution as ref

N_BASIS = 24
N_CHANNELS = 4
SIGMA_ACTIVATIONS = ("relu", "softplus")


class RenderedDistribution(NamedTuple):
    """What :func:`render_distribution` returns."""

    colors: torch.Tensor
    """[R, 3] composited colour (plus ``(1 - opacity) * render_bkgd`` when given)."""
    opacities: torch.Tensor
    """[R, 1] ``sum_j w_j``."""
    depths: torch.Tensor
    """[R, 1] ``sum_j w_j t_j``."""
    sigmas: torch.Tensor | None
    """[R, S] raw Fourier density ``raw_sigma(tau_j)`` (before noise and activation), with
    ``return_samples=True``; else ``None``."""
    t: torch.Tensor | None
    """[R, S] sample distances ``near + tau_j (far - near)``, with ``return_samples=True``."""


def distribution_taus(
    n_samples: int,
    n_rays: int,
    stratified: bool = False,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Normalised sample depths: ``linspace(0, 1, S)`` ``[S]``, or (``stratified``) that grid
    jittered per ray ``[R, S]``: sample ``j`` uniform between the midpoints of its neighbours
    (0 and 1 at the ends), as nerf-pytorch perturbs its samples."""
    n_samples = chk.positive_int("n_samples", n_samples)
    grid = torch.linspace(0.0, 1.0, n_samples, device=device, dtype=dtype)
    if n_samples == 1:
        grid = grid.new_zeros(1)
    if not stratified:
        return grid
    mids = 0.5 * (grid[1:] + grid[:-1])
    upper = torch.cat([mids, grid[-1:].new_ones(1)])
    lower = torch.cat([grid[:1].new_zeros(1), mids])
    u = torch.rand((n_rays, n_samples), generator=generator, device=device, dtype=dtype)
    return torch.addcmul(lower, upper - lower, u)


def _per_ray(name: str, v, n: int, device, dtype) -> torch.Tensor:
    if isinstance(v, torch.Tensor):
        chk.tensor(name, v, ndim=(0, 1, 2))
        v = v.reshape(-1)
        if v.numel() == 1:
            v = v.expand(n)
        if v.numel() != n:
            raise ValueError(f"{name} must hold one value per ray ({n}), got shape {tuple(v.shape)}")
        return v.to(device=device, dtype=dtype)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"{name} must be a float or a tensor, got {type(v).__name__}")
    return torch.full((n,), float(v), device=device, dtype=dtype)


class _RenderDistribution(torch.autograd.Function):
    """Rust forward/backward of flat coefficients; outputs ``(colors, opacities, depths, sigmas)``
    (``sigmas`` empty unless requested)."""

    @staticmethod
    def forward(ctx, coeffs, taus, near, far, noise, n_samples, activation, last_delta, want_sigmas):
        ctx.set_materialize_grads(False)
        dt = chk.float_dtype_of(coeffs)
        arrays = [
            chk.to_numpy("coeffs", coeffs, dt),
            chk.to_numpy("taus", taus, dt),
            chk.to_numpy("near", near, dt),
            chk.to_numpy("far", far, dt),
            None if noise is None else chk.to_numpy("noise", noise, dt),
        ]
        c, o, d, s, t = _core.render_distribution(*arrays, n_samples, activation, last_delta, want_sigmas)
        n = coeffs.shape[0]
        ctx.arrays, ctx.args, ctx.shape = arrays, (n_samples, activation, last_delta), coeffs.shape
        sig = chk.from_numpy(s, (n, n_samples)) if s is not None else coeffs.new_empty(0)
        t = chk.from_numpy(t, (n, n_samples)) if t is not None else coeffs.new_empty(0)
        ctx.mark_non_differentiable(t)
        return chk.from_numpy(c, (n, 3)), chk.from_numpy(o, (n,)), chk.from_numpy(d, (n,)), sig, t

    @staticmethod
    @once_differentiable
    def backward(ctx, v_colors, v_opacities, v_depths, v_sigmas, _v_t):
        dt = torch.float64 if ctx.arrays[0].dtype == np.float64 else torch.float32

        def arr(name, v):
            return None if v is None or v.numel() == 0 else chk.to_numpy(name, v, dt)

        g = _core.render_distribution_backward(
            *ctx.arrays,
            *ctx.args,
            arr("v_colors", v_colors),
            arr("v_opacities", v_opacities),
            arr("v_depths", v_depths),
            arr("v_sigmas", v_sigmas),
        )
        return chk.from_numpy(g, ctx.shape), None, None, None, None, None, None, None, None


def render_distribution(
    coeffs: torch.Tensor,
    n_samples: int,
    near: torch.Tensor | float,
    far: torch.Tensor | float,
    *,
    stratified: bool = False,
    generator: torch.Generator | None = None,
    taus: torch.Tensor | None = None,
    sigma_activation: str = "relu",
    sigma_noise_std: float = 0.0,
    last_delta: float = 1e10,
    render_bkgd: torch.Tensor | None = None,
    return_samples: bool = False,
) -> RenderedDistribution:
    """Volume-renders per-ray Fourier distributions of density and colour (NeRDF).

    Args:
        coeffs: [R, 4, 24] coefficients (sigma, r, g, b x the basis above); differentiable.
        n_samples: samples per ray ``S``.
        near, far: [R] (or [R, 1]) per-ray bounds of the distribution; floats broadcast.
        stratified: jitter the samples per ray (training); else ``linspace(0, 1, S)``.
        generator: random generator of the jitter and the noise.
        taus: explicit normalised depths in [0, 1], sorted, [S] or [R, S] (overrides
            ``stratified``).
        sigma_activation: ``"relu"`` (the paper's) or ``"softplus"``.
        sigma_noise_std: std of Gaussian noise added to the raw density before the activation
            (the paper's ``raw_noise_std`` regulariser; 0 = none).
        last_delta: length of the last interval (``1e10``: it absorbs the rest of the ray).
        render_bkgd: background colour [3] or [R, 3], added as ``(1 - opacity) * bkgd``.
        return_samples: also return the raw Fourier densities and the sample distances.

    Returns:
        :class:`RenderedDistribution` ``(colors [R, 3], opacities [R, 1], depths [R, 1],
        sigmas [R, S] | None, t [R, S] | None)``. Gradients flow to ``coeffs`` only.
    """
    chk.tensor("coeffs", coeffs, ndim=3)
    if tuple(coeffs.shape[1:]) != (N_CHANNELS, N_BASIS):
        raise ValueError(f"coeffs must have shape [R, 4, 24], got {tuple(coeffs.shape)}")
    n_samples = chk.positive_int("n_samples", n_samples)
    sigma_activation = chk.choice("sigma_activation", sigma_activation, SIGMA_ACTIVATIONS)
    if (
        isinstance(sigma_noise_std, bool)
        or not isinstance(sigma_noise_std, (int, float))
        or not sigma_noise_std >= 0
    ):
        raise ValueError(f"sigma_noise_std must be a number >= 0, got {sigma_noise_std!r}")
    if (
        isinstance(last_delta, bool)
        or not isinstance(last_delta, (int, float))
        or not 0 <= last_delta < float("inf")
    ):
        raise ValueError(f"last_delta must be a finite number >= 0, got {last_delta!r}")
    n, device = coeffs.shape[0], coeffs.device
    tensors = {"near": near, "far": far, "taus": taus, "render_bkgd": render_bkgd}
    chk.same_device(coeffs=coeffs, **{k: v for k, v in tensors.items() if isinstance(v, torch.Tensor)})
    rust = chk.use_rust(coeffs, taus, near, far, render_bkgd)
    dtype = coeffs.dtype if coeffs.dtype == torch.float64 else torch.float32
    near_t = _per_ray("near", near, n, device, dtype)
    far_t = _per_ray("far", far, n, device, dtype)
    chk.same_device(coeffs=coeffs, near=near_t, far=far_t, taus=taus, render_bkgd=render_bkgd)
    if taus is None:
        taus = distribution_taus(n_samples, n, stratified, generator, device, dtype)
    else:
        chk.tensor("taus", taus, ndim=(1, 2), finite=not rust)  # Rust checks them itself
        if tuple(taus.shape) not in ((n_samples,), (n, n_samples)):
            raise ValueError(
                f"taus must have shape [{n_samples}] or [{n}, {n_samples}], got {tuple(taus.shape)}"
            )
        taus = taus.to(dtype)
    noise = None
    if sigma_noise_std > 0:
        noise = sigma_noise_std * torch.randn((n, n_samples), generator=generator, device=device, dtype=dtype)
    if rust:
        colors, opac, depths, sig, t = _RenderDistribution.apply(
            coeffs, taus, near_t, far_t, noise, n_samples, sigma_activation, float(last_delta), return_samples
        )
        if coeffs.dtype not in (torch.float32, torch.float64):
            colors, opac, depths, sig, t = (x.to(coeffs.dtype) for x in (colors, opac, depths, sig, t))
    else:
        if not bool(torch.isfinite(coeffs).all()):
            raise ValueError("coeffs contains NaN or infinite values")
        if not bool((far_t >= near_t).all()) or not bool(torch.isfinite(far_t - near_t).all()):
            raise ValueError("far: near and far must be finite with far >= near on every ray")
        if bool(((taus < 0) | (taus > 1)).any()) or (
            taus.shape[-1] > 1 and bool((taus.diff(dim=-1) < 0).any())
        ):
            raise ValueError("taus: every ray's normalised depths must be sorted and within [0, 1]")
        colors, opac, depths, sig = ref.render_distribution(
            coeffs, taus, near_t, far_t, noise, sigma_activation, float(last_delta)
        )
        t = near_t[:, None] + taus * (far_t - near_t)[:, None] if return_samples else None
    opac, depths = opac[:, None], depths[:, None]
    if render_bkgd is not None:
        chk.tensor("render_bkgd", render_bkgd, ndim=(1, 2), last=3, finite=True)
        colors = colors + (1.0 - opac) * render_bkgd
    if not return_samples:
        return RenderedDistribution(colors, opac, depths, None, None)
    return RenderedDistribution(colors, opac, depths, sig, t)
