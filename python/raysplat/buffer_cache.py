"""The cache of freed output buffers behind the Rust kernels (``rust/core/src/buffer_cache.rs``):
freed outputs of at least 1 MB are recycled for later calls of the same size, which avoids
page-faulting fresh memory, up to a byte limit (default 512 MB or ``RAYSPLAT_BUFFER_CACHE_MB``)."""

from __future__ import annotations

from raysplat import _core


def set_buffer_cache_limit(megabytes: float) -> None:
    """Caps the memory kept for reuse by the Rust kernels' output buffers (default 512 MB or
    ``RAYSPLAT_BUFFER_CACHE_MB``; 0 disables the cache). Freed outputs of at least 1 MB are
    recycled for later calls of the same size, which avoids page-faulting fresh memory."""
    if not megabytes >= 0:
        raise ValueError(f"megabytes must be >= 0, got {megabytes}")
    _core.set_buffer_cache_budget(int(megabytes * (1 << 20)))


def empty_buffer_cache() -> None:
    """Returns every cached output buffer to the system."""
    _core.release_buffer_cache()


def buffer_cache_info() -> dict[str, int]:
    """``{"cached_bytes": ..., "limit_bytes": ...}`` of the output-buffer cache."""
    cached, limit = _core.buffer_cache_info()
    return {"cached_bytes": cached, "limit_bytes": limit}
