"""Shared benchmark harness: every (case, implementation) runs in its own spawned process on a
fixed number of threads; time is the best and median of repeated calls, memory the growth of the
process's peak RSS over the measured calls (inputs excluded)."""

from __future__ import annotations

import datetime
import json
import multiprocessing as mp
import os
import platform
import resource
import sys
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


def format_row(case: str, impl: str, r: dict, width: int = 30) -> str:
    """One printed table row: time, peak memory and the speed-up against Rust (``r`` as in the
    JSON rows: ``best_ms``, ``median_ms``, ``peak_mb``, ``rust_speedup``)."""
    label = "1.0x" if impl == "rust" else f"{r['rust_speedup']:.1f}x"
    times = f"{r['best_ms']:9.1f} {r['median_ms']:10.1f} {r['peak_mb']:8.1f}"
    return f"{case:{width}s} {impl:8s} {times} {label:>9s}"


def report(case: str, results: dict[str, dict], rows: list, width: int = 30) -> None:
    """Prints one case's rows (time, peak memory, speed-up relative to the "rust" entry) and
    appends them to ``rows``. Entries marked ``skipped`` are printed as such, except
    "not applicable" ones."""
    rust_ms = results["rust"].get("best_ms")
    for impl, r in results.items():
        if "skipped" in r:
            if "not applicable" not in r["skipped"]:
                print(f"{case:{width}s} {impl:8s} skipped ({r['skipped'][:60]})")
            continue
        ratio = r["best_ms"] / rust_ms if rust_ms else float("nan")
        row = {"case": case, "impl": impl, **r, "rust_speedup": ratio}
        print(format_row(case, impl, row, width))
        rows.append(row)


def header_line(width: int = 30) -> str:
    """Column titles matching :func:`format_row`."""
    titles = zip(("best ms", "median ms", "peak MB", "speed-up"), (9, 10, 8, 9), strict=True)
    return f"{'case':{width}s} {'impl':8s} " + " ".join(f"{t:>{w}s}" for t, w in titles)


def format_target(t: dict) -> str:
    """One printed target check (``case``, ``target``, ``value``, ``holds``)."""
    verdict = "holds" if t["holds"] else "MISSED"
    return f"target {t['case']}: {t['target']}: {t['value']:.1f} -> {verdict}"


def header(width: int = 30) -> None:
    """Prints :func:`header_line`."""
    print(header_line(width))


def write_json(path: str | None, title: str, rows: list, **extra) -> None:
    """Writes a bench's results (``scripts/readme_tables.py`` turns them into the README's
    tables): the command that produced them, the date, the machine, the printed title, rows."""
    if not path:
        return
    doc = {
        "command": " ".join([".venv/bin/python", *sys.argv]),
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}",
        "title": title,
        "rows": rows,
        **extra,
    }
    with open(path, "w") as f:
        json.dump(doc, f, indent=2)
    print(f"results in {path}")


def format_knn_row(row: dict) -> str:
    """One printed row of ``benches/knn.py`` (also used by ``scripts/readme_tables.py``)."""
    n, t_rs, t_sp = row["n"], row["raysplat_s"], row["ckdtree_s"]
    if t_sp is None:
        return f"{n:>10} {t_rs:>13.3f} {'n/a':>12} {'n/a':>9}"
    return f"{n:>10} {t_rs:>13.3f} {t_sp:>12.3f} {t_sp / t_rs:>8.1f}x"
