"""Mixed precision of the trainers' networks: ``config.precision`` = ``"fp32"`` (the default),
``"bf16"`` or ``"fp16"``.

What runs in reduced precision (``torch.autocast`` with that dtype, on any device whose torch
supports it; CPU does both since torch 2.4) — the networks, where the FLOPs are and where a
relative error of 2^-8 (bf16) / 2^-11 (fp16) on an activation is noise:

* the MLPs of the hash-grid fields (:class:`~raysplat.nerf.field.RadianceField` and the proposal /
  coarse fields of the NeRF samplers, text-to-3D's field and its learned background);
* NeRDF's network (:mod:`raysplat.nerdf.model`);
* text-to-3D's diffusion prior: the image encoder, the noise predictions of the SDS / VSD losses and
  the variational score's loss (a Stable Diffusion UNet is where text-to-3D spends its time).

What always stays in fp32, and why:

* the hash-grid tables and their lookup (the Rust kernel on CPU, the twin elsewhere): the
  features are interpolated from fp32 tables and cast where they enter the first MLP layer;
  tables are updated by tiny steps that a 16-bit table would round away;
* the network outputs before their activations: :class:`Autocast` modules return fp32, so the
  density's ``trunc_exp``, the colour sigmoid and NeRDF's Fourier coefficients are fp32;
* volume rendering, compositing, sample placement (the occupancy-grid refresh evaluates the field
  in fp32, :func:`full_precision`: it thresholds densities against their mean and a 16-bit field
  at initialisation rounds them all to one value, which leaves the grid empty; inverse-CDF
  resampling; ProNeRF's sampling networks, whose outputs are sample positions), the losses, the
  optimisers' state and master weights (parameters stay fp32; autocast casts copies), every
  Rust kernel;
* 3D Gaussian splatting entirely (``gs`` and stitching refuse another precision): it has no
  network, and projection (2-D covariance inversion), SH evaluation and alpha compositing are
  exactly the computations 16-bit floats break.

``fp16`` trains with dynamic loss scaling (:class:`GradScaling`, ``torch.amp.GradScaler``): its 5
exponent bits underflow small gradients otherwise; ``bf16`` has fp32's range and needs none. The
scaler's state is part of the trainer's checkpoint; the precision itself is in the config, so
checkpoints and ``metrics.json`` record it.
"""

from __future__ import annotations

import contextlib

import torch

#: the accepted values of ``config.precision``
PRECISIONS = ("fp32", "bf16", "fp16")

#: the autocast dtype of each precision (``None``: no autocast)
DTYPES: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype of ``precision`` on ``device``, or a ``ValueError`` naming the problem
    (an unknown name; a device type whose torch has no autocast, or no autocast for that dtype)."""
    if precision not in DTYPES:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    dtype = DTYPES[precision]
    if dtype is None:
        return None
    kind = torch.device(device).type
    if not torch.amp.is_autocast_available(kind):
        raise ValueError(f"precision {precision!r}: this torch has no autocast on {kind!r}; use 'fp32'")
    try:
        with torch.autocast(kind, dtype=dtype):
            pass
    except (RuntimeError, ValueError) as e:
        raise ValueError(f"precision {precision!r}: autocast to {dtype} is not supported on {kind!r}") from e
    return dtype


def autocast(dtype: torch.dtype | None, device: torch.device | str):
    """``torch.autocast(device type, dtype)``, or a no-op context for ``dtype`` ``None``."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


class Autocast:
    """Mixin of the networks that may run in reduced precision: :meth:`autocast` is the context
    their forward passes run their layers in (set with :func:`set_network_precision`; fp32 by
    default), and they return fp32."""

    #: the autocast dtype (``None``: fp32)
    amp_dtype: torch.dtype | None = None

    def autocast(self, like: torch.Tensor):
        """The autocast context for inputs like ``like`` (its device)."""
        return autocast(self.amp_dtype, like.device)


def set_network_precision(module: torch.nn.Module, precision: str) -> int:
    """Sets ``precision`` on every :class:`Autocast` network in ``module`` (itself included);
    returns how many there are."""
    if precision not in DTYPES:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    dtype = DTYPES[precision]
    n = 0
    for m in module.modules():
        if isinstance(m, Autocast):
            m.amp_dtype = dtype
            n += 1
    return n


@contextlib.contextmanager
def full_precision(module: torch.nn.Module):
    """Runs the :class:`Autocast` networks in ``module`` in fp32 inside the block (e.g. the
    occupancy-grid refresh: it thresholds densities against their mean, and at initialisation
    the densities differ by less than bf16's resolution, so a 16-bit field would leave the grid
    empty)."""
    nets = [m for m in module.modules() if isinstance(m, Autocast)]
    saved = [m.amp_dtype for m in nets]
    for m in nets:
        m.amp_dtype = None
    try:
        yield
    finally:
        for m, d in zip(nets, saved, strict=True):
            m.amp_dtype = d


class GradScaling:
    """Loss scaling for ``fp16`` (``torch.amp.GradScaler``); a pass-through otherwise. One step:
    :meth:`backward` on each loss, :meth:`step` on each optimiser, then :meth:`update` once."""

    def __init__(self, precision: str, device: torch.device | str):
        check_precision(precision, device)
        self.scaler = torch.amp.GradScaler(torch.device(device).type) if precision == "fp16" else None
        self._stepped = False

    @property
    def enabled(self) -> bool:
        return self.scaler is not None

    def backward(self, loss: torch.Tensor) -> None:
        """Backpropagates ``loss`` (times the loss scale); nothing when it has no gradient."""
        scaled = loss if self.scaler is None else self.scaler.scale(loss)
        if scaled.requires_grad:
            scaled.backward()

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """``optimizer.step()`` on the unscaled gradients (skipped when they hold inf / NaN)."""
        if self.scaler is None:
            optimizer.step()
        elif any(p.grad is not None for g in optimizer.param_groups for p in g["params"]):
            self.scaler.step(optimizer)  # (a GradScaler refuses an optimiser without gradients)
            self._stepped = True

    def update(self) -> None:
        """Adjusts the loss scale after the step's optimiser steps (once a step)."""
        if self.scaler is not None and self._stepped:
            self.scaler.update()
        self._stepped = False

    def scale(self) -> float:
        """The current loss scale (1 without scaling)."""
        return 1.0 if self.scaler is None else float(self.scaler.get_scale())

    def state_dict(self) -> dict | None:
        return None if self.scaler is None else self.scaler.state_dict()

    def load_state_dict(self, state: dict | None) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
