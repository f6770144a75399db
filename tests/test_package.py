"""Packaging, threading, GIL release and fork safety of the compiled extension."""

from __future__ import annotations

import multiprocessing
import pathlib
import threading
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


def test_kernel_releases_the_gil(restore_threads):
    """While a long Rust kernel runs in a worker thread, the main thread keeps running Python."""
    rs.set_num_threads(2)
    x = np.random.default_rng(0).random(4_000_000, dtype=np.float32) * 0.01
    _core.weights_from_density(x, None, 2000)  # warm up the pool
    started, done = threading.Event(), threading.Event()
    calls = []

    def work():
        started.set()
        for _ in range(3):
            calls.append(_core.weights_from_density(x, None, 2000))
        done.set()

    th = threading.Thread(target=work)
    th.start()
    started.wait()
    counter = 0
    while not done.is_set():
        counter += 1
    th.join()
    assert len(calls) == 3
    # with the GIL held the main thread could only run between the three calls
    assert counter > 1000, counter
    print("main-thread iterations during kernel:", counter)


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
