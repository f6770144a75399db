"""Argument validation and the tensor <-> NumPy boundary shared by every public op.

Rules: every check raises ``TypeError`` (wrong type / dtype) or ``ValueError`` (wrong shape,
device, value) with the argument's name in the message; CPU tensors are handed to Rust as
NumPy views without copying whenever they are already contiguous and of the right dtype.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import numpy as np
import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def tensor(
    name: str,
    x: object,
    *,
    ndim: int | Sequence[int] | None = None,
    last: int | None = None,
    floating: bool | None = True,
    finite: bool = False,
) -> torch.Tensor:
    """Checks that ``x`` is a tensor with the given rank / last dimension / dtype kind."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.dim() not in allowed:
            want = " or ".join(str(a) for a in allowed)
            raise ValueError(f"{name} must have {want} dimensions, got shape {tuple(x.shape)}")
    if last is not None and (x.dim() == 0 or x.shape[-1] != last):
        raise ValueError(f"{name} must have last dimension {last}, got shape {tuple(x.shape)}")
    if floating is True and x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
    if floating is False and (x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool):
        raise TypeError(f"{name} must be an integer tensor, got {x.dtype}")
    if finite and x.numel() > 0 and x.device.type != "meta" and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def same_device(**tensors: torch.Tensor | None) -> torch.device:
    """The common device of the given tensors (``None`` entries are skipped)."""
    devices = {k: t.device for k, t in tensors.items() if t is not None}
    if not devices:
        return torch.device("cpu")
    first = next(iter(devices.values()))
    for k, d in devices.items():
        if d != first:
            names = ", ".join(f"{n}={v}" for n, v in devices.items())
            raise ValueError(f"all tensors must be on the same device; got {names} ({k} differs)")
    return first


def same_shape(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    """Raises unless ``a`` and ``b`` have the same shape."""
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def positive_int(name: str, v: object, minimum: int = 1) -> int:
    """Checks an integer count ``>= minimum``."""
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(v).__name__}")
    if v < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {v}")
    return int(v)


def choice(name: str, v: object, options: Sequence[str]) -> str:
    """Checks that ``v`` is one of ``options``."""
    if v not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}, got {v!r}")
    return str(v)


_BACKEND = ["auto"]
BACKENDS = ("auto", "torch", "rust", "nerfacc", "gsplat")


@contextlib.contextmanager
def backend(name: str):
    """Context manager forcing the implementation: ``"auto"`` (Rust for CPU tensors; on CUDA the
    nerfacc / gsplat kernels when they load, else the torch twins), ``"torch"`` (the pure-torch
    twins everywhere), ``"rust"`` (CPU tensors only), ``"nerfacc"`` or ``"gsplat"`` (that peer's
    CUDA kernels for the ops it serves, an error when it cannot run them; other ops as in
    ``"auto"``; see :mod:`raysplat._peers`).
    Used by tests and benchmarks to compare the paths through the same public calls."""
    choice("backend", name, BACKENDS)
    previous = _BACKEND[0]
    _BACKEND[0] = name
    try:
        yield
    finally:
        _BACKEND[0] = previous


def use_rust(*tensors: torch.Tensor | None) -> bool:
    """True when the Rust kernels should run: every given tensor lives on the CPU (and the
    torch backend is not forced)."""
    on_cpu = all(not isinstance(t, torch.Tensor) or t.device.type == "cpu" for t in tensors)
    if _BACKEND[0] == "torch":
        return False
    if _BACKEND[0] == "rust" and not on_cpu:
        raise ValueError("backend('rust') needs CPU tensors; got a tensor on another device")
    return on_cpu


def to_numpy(name: str, x: torch.Tensor, dtype: torch.dtype = torch.float32) -> np.ndarray:
    """A contiguous NumPy view of CPU tensor ``x`` in ``dtype`` (copies only when needed)."""
    if x.device.type != "cpu":
        raise ValueError(f"{name} must be a CPU tensor for the Rust kernels, got device {x.device}")
    x = x.detach()
    if x.dtype != dtype:
        x = x.to(dtype)
    return x.contiguous().numpy()


def float_dtype_of(x: torch.Tensor) -> torch.dtype:
    """float64 stays float64 (exact gradient checks); every other float dtype runs as float32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def from_numpy(a: np.ndarray, shape: Sequence[int], dtype: torch.dtype | None = None) -> torch.Tensor:
    """Wraps a kernel's result (no copy) in a tensor of ``shape`` (a base tensor, not a view,
    so autograd allows in-place edits of op outputs)."""
    t = torch.from_numpy(a.reshape(tuple(shape)))
    if dtype is not None and t.dtype != dtype:
        t = t.to(dtype)
    return t
