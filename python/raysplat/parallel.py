"""The size of raysplat's own thread pool (``rust/core/src/parallel.rs``): every Rust kernel runs
on it, never on rayon's global pool. Default: ``RAYSPLAT_NUM_THREADS`` or all cores."""

from __future__ import annotations

from raysplat import _checks, _core


def set_num_threads(n: int) -> None:
    """Sets how many threads the Rust kernels use (default: ``RAYSPLAT_NUM_THREADS`` or all cores)."""
    _core.set_num_threads(_checks.positive_int("n", n))


def get_num_threads() -> int:
    """The number of threads the Rust kernels use."""
    return _core.get_num_threads()
