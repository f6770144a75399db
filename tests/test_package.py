"""Packaging, threading, GIL release and fork safety of the compiled extension."""

from __future__ import annotations

import multiprocessing
import pathlib
import platform
import threading
import time
import warnings

import numpy as np
import pytest
import raysplat as rs
import tomllib
import torch
from raysplat import _core

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_extension_is_abi3():
    assert _core.__file__.endswith(".abi3.so")


def test_version_matches_cargo_workspace():
    with open(ROOT / "Cargo.toml", "rb") as f:
        cargo = tomllib.load(f)
    version = cargo["workspace"]["package"]["version"]
    assert rs.__version__ == _core.__version__ == version


def test_public_api_is_exported():
    for name in rs.__all__:
        assert hasattr(rs, name), name


@pytest.fixture
def restore_threads():
    n = rs.get_num_threads()
    yield
    rs.set_num_threads(n)


def test_num_threads_round_trip(restore_threads):
    x = torch.rand(64, 32)
    ref = rs.inclusive_sum(x)
    for n in (1, 2, 1, 3):
        rs.set_num_threads(n)
        assert rs.get_num_threads() == n
        assert torch.equal(rs.inclusive_sum(x), ref)


def test_set_num_threads_zero_raises(restore_threads):
    before = rs.get_num_threads()
    with pytest.raises(ValueError):
        rs.set_num_threads(0)
    assert rs.get_num_threads() == before


def _main_thread_stalls(call, n_calls=3):
    """Runs ``call`` ``n_calls`` times in a worker thread while the main thread spins. Returns,
    per call, the fraction of the call covered by its longest main-thread pause."""
    started, done = threading.Event(), threading.Event()
    windows = []

    def work():
        started.set()
        for _ in range(n_calls):
            t0 = time.perf_counter()
            call()
            windows.append((t0, time.perf_counter()))
        done.set()

    th = threading.Thread(target=work)
    th.start()
    started.wait()
    pauses, last = [], time.perf_counter()
    while not done.is_set():
        now = time.perf_counter()
        if now - last > 1e-3:
            pauses.append((last, now))
        last = now
    th.join()
    assert len(windows) == n_calls
    assert all(t1 - t0 > 0.05 for t0, t1 in windows), "calls too short to tell a held GIL from a free one"
    return [max([min(b, t1) - max(a, t0) for a, b in pauses] + [0.0]) / (t1 - t0) for t0, t1 in windows]


def test_kernel_releases_the_gil(restore_threads):
    """While a long Rust kernel runs in a worker thread, the main thread keeps running Python.
    A call holding the GIL pauses the main thread for (nearly) the whole call; with the GIL
    released its pauses are OS scheduling hiccups. The median over three calls of the longest
    pause, as a fraction of the call, must stay under 1/2 (one hiccup on a loaded machine
    cannot fail the test; a GIL-holding call gives ~1)."""
    rs.set_num_threads(1)  # leave a core to the main thread
    points = np.random.default_rng(0).random((150_000, 3), dtype=np.float32)
    _core.knn(points, 3)  # warm up the pool and the buffer cache
    stalls = sorted(_main_thread_stalls(lambda: _core.knn(points, 3)))
    print("longest main-thread pause per call (fraction of the call):", [round(x, 3) for x in stalls])
    assert stalls[1] < 0.5, stalls


def _child(q):
    x = torch.rand(8, 16)
    ts = torch.linspace(0, 1, 17)
    w, _, _ = rs.render_weight_from_density(ts[:-1].expand(8, 16), ts[1:].expand(8, 16), x)
    out = rs.accumulate_along_rays(w)
    q.put(float(out.sum()))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_fork_safety():
    # use the kernels (and their thread pool) in the parent first
    x = torch.rand(512, 64)
    rs.inclusive_sum(x)
    rs.render_weight_from_density(x, x + 0.1, x)
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        p = ctx.Process(target=_child, args=(q,))
        p.start()
    p.join(timeout=60)
    if p.is_alive():
        p.kill()
        p.join()
        pytest.fail("forked child hung calling a kernel")
    assert p.exitcode == 0
    assert q.get(timeout=5) > 0


def test_buffer_cache_recycles_outputs_and_respects_its_limit():
    edges = torch.linspace(0.0, 1.0, 65).expand(8192, -1).contiguous()
    weights = torch.rand(8192, 64, generator=torch.Generator().manual_seed(0))
    try:
        rs.set_buffer_cache_limit(64)
        assert rs.buffer_cache_info()["limit_bytes"] == 64 << 20
        first = rs.importance_sampling(edges, weights, 64, stratified=False)
        ptr, expected = first.data_ptr(), first.clone()
        del first  # its 2 MB buffer goes to the cache ...
        assert rs.buffer_cache_info()["cached_bytes"] >= 8192 * 65 * 4
        again = rs.importance_sampling(edges, weights, 64, stratified=False)
        assert again.data_ptr() == ptr  # ... and serves the next call of that size
        assert torch.equal(again, expected)  # recycled memory holds no stale values
        del again
        rs.empty_buffer_cache()
        assert rs.buffer_cache_info()["cached_bytes"] == 0
        rs.set_buffer_cache_limit(0)
        out = rs.importance_sampling(edges, weights, 64, stratified=False)
        del out
        assert rs.buffer_cache_info()["cached_bytes"] == 0
    finally:
        rs.set_buffer_cache_limit(512)
    with pytest.raises(ValueError, match="megabytes"):
        rs.set_buffer_cache_limit(-1)


_ISA_SCRIPT = """
import hashlib, torch, raysplat as rs
g = torch.Generator().manual_seed(0)
R, S = 3000, 48
edges = torch.sort(torch.rand(R, S + 1, generator=g) * 5, dim=1).values
w = torch.rand(R, S, generator=g) * (torch.rand(R, S, generator=g) > 0.3)
out = [rs.importance_sampling(edges, w, 40, generator=torch.Generator().manual_seed(1))]
sig = (torch.rand(R, S, generator=g) * 3).requires_grad_()
for c in (1, 3, 4, 6):
    rgb = torch.rand(R, S, c, generator=g, dtype=torch.float32).requires_grad_()
    col, op, dep, wts = rs.volume_render(edges[:, :-1], edges[:, 1:], sig, rgb)
    (col.sum() + op.sum() + dep.sum() + wts.square().sum()).backward()
    out += [col, op, dep, wts, sig.grad, rgb.grad]
    sig.grad = None
grid = rs.OccupancyGrid([-1, -1, -1, 1, 1, 1], 32)
grid.binaries.copy_(torch.rand(grid.binaries.shape, generator=g) > 0.6)
o = torch.rand(R, 3, generator=g) * 4 - 2
d = torch.nn.functional.normalize(torch.randn(R, 3, generator=g), dim=-1)
out += list(grid.sampling(o, d, render_step_size=0.01))
print(rs._core.simd_level(), hashlib.sha256(b"".join(t.detach().numpy().tobytes() for t in out)).hexdigest())
"""


def _cpu_has_avx2() -> bool:
    try:
        flags = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return platform.machine() in ("x86_64", "AMD64") and " avx2" in flags


@pytest.mark.skipif(not _cpu_has_avx2(), reason="the CPU has no AVX2 (or /proc/cpuinfo is unreadable)")
def test_avx2_and_baseline_kernels_give_bit_identical_results():
    """The default run uses the AVX2 build, RAYSPLAT_NO_AVX2=1 the baseline, and the hashes of
    every output agree."""
    import os
    import subprocess
    import sys

    def run(extra_env):
        env = {k: v for k, v in os.environ.items() if k != "RAYSPLAT_NO_AVX2"}
        env.update(extra_env)
        res = subprocess.run([sys.executable, "-c", _ISA_SCRIPT], env=env, capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        return res.stdout.split()

    level, digest = run({})
    base_level, base_digest = run({"RAYSPLAT_NO_AVX2": "1"})
    assert (level, base_level) == ("avx2", "baseline")
    assert digest == base_digest


PACKAGE = ROOT / "python" / "raysplat"


def _package_sources():
    return sorted(PACKAGE.rglob("*.py"))


def test_package_modules_import_modules_not_the_package():
    """Inside python/raysplat, ``import raysplat`` (any alias) and ``from raysplat import name``
    of anything but a submodule are import cycles waiting to happen: modules import the modules
    they use (``from raysplat.volrend import volume_render``)."""
    import ast

    submodules = {p.name.split(".")[0] for p in PACKAGE.iterdir()}  # modules, _core's .so, subpackages
    bad = []
    for path in _package_sources():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Import):
                bad += [f"{where} import {a.name}" for a in node.names if a.name == "raysplat"]
            elif isinstance(node, ast.ImportFrom) and node.module == "raysplat" and node.level == 0:
                names = [a.name for a in node.names if a.name not in submodules]
                bad += [f"{where} from raysplat import {name}" for name in names]
    assert not bad, "\n".join(bad)


def test_no_control_flow_on_exception_text():
    """Errors carry the argument's name from where they are raised; nothing parses them."""
    import re

    pattern = re.compile(r"\bstr\((e|err|error|exc|ex)\)")
    bad = [
        f"{path.relative_to(ROOT)}:{i}"
        for path in _package_sources()
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not bad, bad
