"""Shared benchmark harness: every (case, implementation) runs in its own spawned process on a
fixed number of threads; time is the best and median of repeated calls, memory the growth of the
process's peak RSS over the measured calls (inputs excluded)."""

from __future__ import annotations

import multiprocessing as mp
import resource
import time
from collections.abc import Callable


def set_threads(threads: int):
    """Pins torch's and raysplat's thread counts; returns ``(torch, raysplat)``."""
    import raysplat as rs
    import torch

    torch.set_num_threads(threads)
    rs.set_num_threads(threads)
    return torch, rs


def time_call(fn: Callable[[], object], repeats: int) -> dict:
    """Warm-up once, then time ``repeats`` calls; reports best/median ms and the peak RSS growth
    in MB over all calls (measured from before the warm-up, since the peak is monotonic)."""
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "best_ms": 1e3 * min(times),
        "median_ms": 1e3 * sorted(times)[len(times) // 2],
        "peak_mb": (peak - base) / 1024.0,
    }


def in_subprocess(target: Callable, *args, timeout: float = 1200) -> dict:
    """Runs ``target(*args, queue)`` in a fresh spawned process and returns what it put."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=target, args=(*args, q))
    p.start()
    out = q.get(timeout=timeout)
    p.join()
    return out
