"""Dispatch to the CUDA peers (nerfacc, gsplat), tested on CPU with fake peer modules.

``_peers.on_cuda`` is patched to call CPU tensors "CUDA", and fake ``nerfacc`` / ``gsplat``
modules (their kernels computed by raysplat's twins, every call recorded) stand in for the real
ones: which path runs, what the adapters hand the peers (their results must equal the Rust
path's), forced backends, and the single warning when an extension does not load.
"""

from __future__ import annotations

import shutil
import sys
import types
import warnings

import pytest
import raysplat as rs
import torch
from raysplat import _peers
from raysplat.reference import grid as ref_grid
from raysplat.reference import sampling as ref_sampling
from raysplat.reference import scan as ref_scan
from raysplat.reference import volrend as ref_volrend
from torch.testing import assert_close


def _offsets(packed_info: torch.Tensor) -> torch.Tensor:
    assert packed_info.dtype == torch.int64 and packed_info.shape[-1] == 2
    starts, counts = packed_info.unbind(-1)
    assert torch.equal(starts[1:], (starts + counts)[:-1])
    return torch.cat([starts, (starts + counts)[-1:]])


class _Extension(types.ModuleType):
    """``<peer>.cuda._backend``: ``_C`` is a module, ``None`` (no toolkit) or raises (failed build)."""

    def __init__(self, name: str, mode: str):
        super().__init__(name)
        self._mode = mode

    def __getattr__(self, attr):
        if attr != "_C":
            raise AttributeError(attr)
        if self._mode == "raises":
            raise RuntimeError("Error building extension 'nerfacc_cuda': nvcc fatal")
        return object() if self._mode == "ok" else None


def _fake_nerfacc(calls: list) -> types.ModuleType:
    m = types.ModuleType("nerfacc")

    def scan(op, exclusive):
        def f(inputs, packed_info=None):
            calls.append(f"{'exclusive' if exclusive else 'inclusive'}_{op}")
            return ref_scan.scan(inputs, _offsets(packed_info), op, exclusive)

        return f

    for op in ("sum", "prod"):
        for ex in (False, True):
            setattr(m, f"{'exclusive' if ex else 'inclusive'}_{op}", scan(op, ex))

    def render_weight_from_density(t_starts, t_ends, sigmas, packed_info=None):
        calls.append("render_weight_from_density")
        return ref_volrend.weights_from_density(sigmas * (t_ends - t_starts), _offsets(packed_info))

    def render_weight_from_alpha(alphas, packed_info=None):
        calls.append("render_weight_from_alpha")
        return ref_volrend.weights_from_alpha(alphas, _offsets(packed_info))

    class RayIntervals:
        def __init__(self, vals, packed_info=None):
            self.vals = vals

    def importance_sampling(intervals, cdfs, n, stratified):
        calls.append("importance_sampling")
        assert not stratified
        w = cdfs[:, 1:] - cdfs[:, :-1]
        assert bool((w.sum(-1) > 0).all()), "all-zero rays must reach nerfacc as uniform"
        return types.SimpleNamespace(vals=ref_sampling.importance_sampling(intervals.vals, w, n, None)), None

    def traverse_grids(o, d, binaries, aabbs, near_planes, far_planes, step_size, cone_angle):
        calls.append("traverse_grids")
        ri, ts, te = ref_grid.march(
            o, d, near_planes, far_planes, binaries, aabbs[0], step_size, cone_angle, None
        )
        k = ts.numel()
        left = torch.cat([torch.ones(k, dtype=torch.bool), torch.zeros(k, dtype=torch.bool)])
        intervals = types.SimpleNamespace(vals=torch.cat([ts, te]), is_left=left, is_right=~left)
        return intervals, types.SimpleNamespace(ray_indices=ri.int()), None

    for f in (render_weight_from_density, render_weight_from_alpha, importance_sampling, traverse_grids):
        setattr(m, f.__name__, f)
    m.RayIntervals = RayIntervals
    return m


def _fake_gsplat(calls: list) -> types.ModuleType:
    m = types.ModuleType("gsplat")

    def rasterization(*args, **kw):
        calls.append(("rasterization", kw))
        return "gsplat-image", "gsplat-alpha", {}

    m.rasterization = rasterization
    return m


@pytest.fixture
def peers(monkeypatch):
    """Installs fake peers: ``install(name, ext="ok" | "none" | "raises" | "missing")``; returns
    the list of recorded calls. CPU tensors count as CUDA for the dispatch."""
    calls: list = []
    monkeypatch.setattr(_peers, "on_cuda", lambda t: True)
    _peers.reset()

    def install(name, ext="ok"):
        if ext == "missing":
            monkeypatch.setitem(sys.modules, name, None)  # import raises ImportError
            return calls
        mod = _fake_nerfacc(calls) if name == "nerfacc" else _fake_gsplat(calls)
        cuda = types.ModuleType(f"{name}.cuda")
        monkeypatch.setitem(sys.modules, name, mod)
        monkeypatch.setitem(sys.modules, f"{name}.cuda", cuda)
        monkeypatch.setitem(sys.modules, f"{name}.cuda._backend", _Extension(f"{name}.cuda._backend", ext))
        _peers.reset()
        return calls

    yield install
    _peers.reset()


def _packed(n_rays=6, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    counts = torch.randint(0, 7, (n_rays,), generator=g)
    counts[1] = 0
    ri = torch.repeat_interleave(torch.arange(n_rays), counts)
    n = ri.numel()
    ts = torch.rand(n, generator=g, dtype=dtype) * 3
    te = ts + torch.rand(n, generator=g, dtype=dtype) * 0.2 + 0.01
    sigmas = torch.rand(n, generator=g, dtype=dtype) * 4
    rgbs = torch.rand(n, 3, generator=g, dtype=dtype)
    return ri, ts, te, sigmas, rgbs


def _rust(fn):
    with rs.backend("rust"):
        return fn()


def test_packed_ops_run_nerfacc_and_match_rust(peers):
    calls = peers("nerfacc")
    ri, ts, te, sigmas, rgbs = _packed()
    n_rays = 6
    cases = {
        "inclusive_sum": lambda: rs.inclusive_sum(sigmas, ray_indices=ri, n_rays=n_rays),
        "exclusive_prod": lambda: rs.exclusive_prod(sigmas, ray_indices=ri, n_rays=n_rays),
        "render_weight_from_density": lambda: rs.render_weight_from_density(ts, te, sigmas, ri, n_rays),
        "render_weight_from_alpha": lambda: rs.render_weight_from_alpha(1 - torch.exp(-sigmas), ri, n_rays),
    }
    for name, fn in cases.items():
        calls.clear()
        got = fn()
        assert calls == [name]
        assert_close(got, _rust(fn), rtol=1e-5, atol=1e-6)
    # packed_info instead of ray_indices
    pi = rs.pack_info(ri, n_rays)
    calls.clear()
    assert_close(
        rs.exclusive_sum(sigmas, packed_info=pi), _rust(lambda: rs.exclusive_sum(sigmas, packed_info=pi))
    )
    assert calls == ["exclusive_sum"]
    # volume_render: nerfacc's weights, accumulated per ray
    calls.clear()
    got = rs.volume_render(ts, te, sigmas, rgbs, ri, n_rays, render_bkgd=torch.ones(3))
    assert calls == ["render_weight_from_density"]
    want = _rust(lambda: rs.volume_render(ts, te, sigmas, rgbs, ri, n_rays, render_bkgd=torch.ones(3)))
    for a, b in zip(got, want, strict=True):
        assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_nerfacc_gradients_flow(peers):
    peers("nerfacc")
    ri, ts, te, sigmas, rgbs = _packed()
    sig = sigmas.clone().requires_grad_(True)
    col = rgbs.clone().requires_grad_(True)
    colors, _, _, _ = rs.volume_render(ts, te, sig, col, ri, 6)
    colors.sum().backward()
    sig_r = sigmas.clone().requires_grad_(True)
    col_r = rgbs.clone().requires_grad_(True)
    with rs.backend("rust"):
        rs.volume_render(ts, te, sig_r, col_r, ri, 6)[0].sum().backward()
    assert_close(sig.grad, sig_r.grad, rtol=1e-4, atol=1e-5)
    assert_close(col.grad, col_r.grad, rtol=1e-5, atol=1e-6)


def test_dense_and_float64_inputs_stay_on_the_twins(peers):
    calls = peers("nerfacc")
    x = torch.rand(4, 5)
    rs.inclusive_sum(x)
    rs.render_weight_from_density(x, x + 0.1, x)
    ri, ts, te, sigmas, _ = _packed(dtype=torch.float64)
    rs.render_weight_from_density(ts, te, sigmas, ri, 6)
    assert calls == []


def test_importance_sampling_dispatch(peers):
    calls = peers("nerfacc")
    g = torch.Generator().manual_seed(3)
    edges = torch.sort(torch.rand(5, 9, generator=g) * 4, -1).values
    w = torch.rand(5, 8, generator=g)
    w[2] = 0.0  # falls back to uniform on every path
    got = rs.importance_sampling(edges, w, 6, stratified=False)
    assert calls == ["importance_sampling"]
    assert_close(
        got, _rust(lambda: rs.importance_sampling(edges, w, 6, stratified=False)), rtol=1e-5, atol=1e-5
    )
    calls.clear()
    rs.importance_sampling(edges, w, 6, stratified=True, generator=torch.Generator().manual_seed(0))
    assert calls == [], "an explicit generator keeps the twin (nerfacc draws its own jitter)"


@pytest.mark.parametrize("stratified", [False, True])
@pytest.mark.parametrize("levels", [1, 2])
def test_occupancy_grid_marching_runs_traverse_grids(peers, stratified, levels):
    calls = peers("nerfacc")
    grid = rs.OccupancyGrid([-1, -1, -1, 1, 1, 1], 8, levels)
    grid.binaries.copy_(torch.rand(grid.binaries.shape, generator=torch.Generator().manual_seed(1)) < 0.4)
    g = torch.Generator().manual_seed(2)
    o = torch.randn(50, 3, generator=g) * 0.3 + torch.tensor([0.0, 0.0, -3.0])
    d = torch.nn.functional.normalize(
        torch.randn(50, 3, generator=g) * 0.2 + torch.tensor([0.0, 0.0, 1.0]), dim=-1
    )
    kw = {"near": 0.5, "far": 6.0, "render_step_size": 0.05, "stratified": stratified}
    got = grid.sampling(o, d, generator=torch.Generator().manual_seed(5), **kw)
    assert calls == ["traverse_grids"]
    want = _rust(lambda: grid.sampling(o, d, generator=torch.Generator().manual_seed(5), **kw))
    assert got[0].dtype == torch.long and torch.equal(got[0], want[0])
    assert_close(got[1], want[1], rtol=1e-5, atol=1e-5)
    assert_close(got[2], want[2], rtol=1e-5, atol=1e-5)


def test_torch_backend_never_calls_peers(peers):
    calls = peers("nerfacc")
    peers("gsplat")
    ri, ts, te, sigmas, _ = _packed()
    with rs.backend("torch"):
        rs.render_weight_from_density(ts, te, sigmas, ri, 6)
        rs.rasterization(**_splat_scene())
    assert calls == []


def test_forced_nerfacc_backend(peers, monkeypatch):
    calls = peers("nerfacc")
    ri, ts, te, sigmas, _ = _packed()
    with rs.backend("nerfacc"):
        rs.render_weight_from_density(ts, te, sigmas, ri, 6)
        rs.inclusive_sum(torch.rand(3, 4))  # dense: nerfacc has no kernel, the twin runs
    assert calls == ["render_weight_from_density"]
    monkeypatch.setattr(_peers, "on_cuda", lambda t: t.device.type == "cuda")
    with rs.backend("nerfacc"), pytest.raises(ValueError, match="nerfacc.*CUDA tensors"):
        rs.render_weight_from_density(ts, te, sigmas, ri, 6)


@pytest.mark.parametrize("ext", ["none", "raises", "missing"])
def test_forced_backend_names_the_unavailable_peer(peers, ext):
    peers("nerfacc", ext=ext)
    ri, ts, te, sigmas, _ = _packed()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", _peers.PeerFallbackWarning)
        with rs.backend("nerfacc"), pytest.raises(ValueError, match="nerfacc"):
            rs.render_weight_from_density(ts, te, sigmas, ri, 6)


@pytest.mark.parametrize("ext", ["none", "raises"])
def test_failed_extension_falls_back_with_one_warning(peers, ext):
    calls = peers("nerfacc", ext=ext)
    ri, ts, te, sigmas, rgbs = _packed()
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        for _ in range(3):
            got = rs.volume_render(ts, te, sigmas, rgbs, ri, 6)
            rs.inclusive_sum(sigmas, ray_indices=ri, n_rays=6)
    fallbacks = [w for w in rec if issubclass(w.category, _peers.PeerFallbackWarning)]
    assert len(fallbacks) == 1, [str(w.message) for w in rec]
    assert "nerfacc" in str(fallbacks[0].message) and "\n" not in str(fallbacks[0].message)
    assert calls == []
    want = _rust(lambda: rs.volume_render(ts, te, sigmas, rgbs, ri, 6))
    assert_close(got[0], want[0], rtol=1e-5, atol=1e-6)
    assert "extension" in _peers.status()["nerfacc"]


def test_missing_peer_falls_back_silently(peers):
    peers("nerfacc", ext="missing")
    ri, ts, te, sigmas, _ = _packed()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rs.render_weight_from_density(ts, te, sigmas, ri, 6)
    assert "not installed" in _peers.status()["nerfacc"]


@pytest.mark.skipif(
    shutil.which("nvcc") is not None, reason="nvcc present: importing nerfacc would JIT-build it"
)
def test_real_nerfacc_without_toolkit_warns_once(monkeypatch):
    pytest.importorskip("nerfacc")
    monkeypatch.setattr(_peers, "on_cuda", lambda t: True)
    _peers.reset()
    ri, ts, te, sigmas, _ = _packed()
    try:
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            for _ in range(2):
                rs.render_weight_from_density(ts, te, sigmas, ri, 6)
        assert sum(issubclass(w.category, _peers.PeerFallbackWarning) for w in rec) == 1
    finally:
        _peers.reset()


def _splat_scene(n=5):
    g = torch.Generator().manual_seed(0)
    viewmats = torch.eye(4)[None].clone()
    viewmats[0, 2, 3] = 3.0
    return {
        "means": torch.rand(n, 3, generator=g) - 0.5,
        "quats": torch.randn(n, 4, generator=g),
        "scales": torch.full((n, 3), 0.1),
        "opacities": torch.full((n,), 0.8),
        "colors": torch.rand(n, 3, generator=g),
        "viewmats": viewmats,
        "Ks": torch.tensor([[[20.0, 0, 8], [0, 20.0, 8], [0, 0, 1]]]),
        "width": 16,
        "height": 16,
    }


def test_rasterization_dispatches_to_gsplat(peers):
    calls = peers("gsplat")
    img, _, _ = rs.rasterization(**_splat_scene(), packed=True, camera_model="fisheye")
    assert img == "gsplat-image"
    ((name, kw),) = calls
    assert kw["packed"] is True and kw["camera_model"] == "fisheye"


def test_rasterization_gsplat_extension_failure_falls_back_once(peers):
    calls = peers("gsplat", ext="none")
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        imgs = [rs.rasterization(**_splat_scene())[0] for _ in range(2)]
    assert sum(issubclass(w.category, _peers.PeerFallbackWarning) for w in rec) == 1
    assert calls == []
    want = _rust(lambda: rs.rasterization(**_splat_scene())[0])
    assert torch.equal(imgs[0], want)


def test_backend_names():
    for name in ("auto", "torch", "rust", "nerfacc", "gsplat"):
        with rs.backend(name):
            pass
    with pytest.raises(ValueError, match="backend"):
        with rs.backend("cuda"):
            pass
