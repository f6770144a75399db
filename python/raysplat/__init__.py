"""raysplat: Rust-accelerated neural rendering and 3D sampling for PyTorch."""

from raysplat import _core

__version__: str = _core.__version__


def set_num_threads(n: int) -> None:
    """Sets how many threads raysplat's Rust kernels use (default: ``RAYSPLAT_NUM_THREADS`` or all cores)."""
    _core.set_num_threads(n)


def get_num_threads() -> int:
    """The number of threads raysplat's Rust kernels use."""
    return _core.get_num_threads()


__all__ = ["__version__", "get_num_threads", "set_num_threads"]
