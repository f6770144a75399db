"""raysplat.knn / knn_scale_init: Rust kd-tree vs the pure-torch reference and scipy."""

from __future__ import annotations

import pytest
import raysplat
import torch
from raysplat import _checks
from raysplat.knn import knn, knn_scale_init
from raysplat.reference import knn as reference


def cloud(n: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, generator=g) * 2 - 1) * scale


def clustered(n_clusters: int, per: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(n_clusters, 3, generator=g) * 100
    return (centres[:, None] + torch.randn(n_clusters, per, 3, generator=g) * 1e-3).reshape(-1, 3)


def gridded(n: int, seed: int, step: float = 0.25) -> torch.Tensor:
    """Points snapped to a coarse grid: many exact duplicates and equal distances."""
    return torch.round(cloud(n, seed) / step) * step


def assert_same(a: tuple[torch.Tensor, torch.Tensor], b: tuple[torch.Tensor, torch.Tensor]):
    assert a[0].dtype == torch.float32 and a[1].dtype == torch.int64
    assert a[0].shape == b[0].shape and a[1].shape == b[1].shape
    torch.testing.assert_close(a[0], b[0], rtol=0, atol=0)
    assert torch.equal(a[1], b[1])


CLOUDS = {
    "uniform": lambda: cloud(3000, 0),
    "gridded": lambda: gridded(2500, 1),
    "duplicated": lambda: torch.cat([cloud(800, 2), cloud(800, 2)[:400], cloud(800, 2)[:50]]),
    "clustered": lambda: clustered(15, 120, 3),
    "identical": lambda: torch.full((300, 3), 0.5),
    "plane": lambda: cloud(1000, 4) * torch.tensor([1.0, 1.0, 0.0]),
}


@pytest.mark.parametrize("name", sorted(CLOUDS))
@pytest.mark.parametrize("k", [1, 3, 16])
def test_self_query_matches_reference(name: str, k: int) -> None:
    pts = CLOUDS[name]()
    for exclude_self in (False, True):
        got = knn(pts, k, exclude_self=exclude_self)
        assert got[0].shape == (pts.shape[0], k)
        assert_same(got, reference.knn(pts, k, exclude_self=exclude_self, max_elements=1 << 20))


@pytest.mark.parametrize("name", sorted(CLOUDS))
def test_queries_match_reference(name: str) -> None:
    pts = CLOUDS[name]()
    queries = torch.cat([cloud(300, 10), gridded(100, 11), pts[:50], pts[:5] + 1e3])
    for k in (1, 4, 32):
        assert_same(knn(pts, k, queries), reference.knn(pts, k, queries))


def test_small_and_edge_sizes() -> None:
    for n in (1, 2, 3, 5, 13, 40):
        pts = cloud(n, n)
        for k in range(1, n + 1):
            assert_same(knn(pts, k), reference.knn(pts, k))
            if k < n:
                want = reference.knn(pts, k, exclude_self=True)
                assert_same(knn(pts, k, exclude_self=True), want)
        q = cloud(7, 100 + n)
        assert_same(knn(pts, n, q), reference.knn(pts, n, q))


def test_self_first_and_exclude_self() -> None:
    pts = torch.cat([gridded(500, 5), gridded(500, 5)])  # every point has a duplicate
    d, i = knn(pts, 4)
    assert torch.equal(i[:, 0], torch.arange(pts.shape[0]))
    assert torch.all(d[:, 0] == 0)
    de, ie = knn(pts, 3, exclude_self=True)
    assert not torch.any(ie == torch.arange(pts.shape[0])[:, None])
    assert torch.equal(ie, i[:, 1:]) and torch.equal(de, d[:, 1:])
    # Duplicates are neighbours at distance 0, lower index first.
    assert torch.all(de[:, 0] == 0)
    assert torch.equal(pts[ie[:, 0]], pts)
    assert torch.all(ie[500:, 0] <= torch.arange(500))


def test_all_identical_large() -> None:
    pts = torch.full((200_000, 3), -2.5)
    d, i = knn(pts, 3, exclude_self=True)
    assert torch.all(d == 0)
    expected = torch.tensor([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2], [0, 1, 2]])
    assert torch.equal(i[:5], expected)
    assert torch.equal(i[-1], torch.tensor([0, 1, 2]))


def test_sorted_rows_and_exact_distances() -> None:
    pts = cloud(2000, 7)
    q = cloud(100, 8)
    d, i = knn(pts, 10, q)
    assert torch.all(d[:, 1:] >= d[:, :-1])
    true = (q[:, None].double() - pts[i].double()).norm(dim=-1).float()
    torch.testing.assert_close(d, true, rtol=1e-6, atol=1e-7)


def test_matches_scipy_ckdtree() -> None:
    spatial = pytest.importorskip("scipy.spatial")
    pts = cloud(50_000, 9, scale=10.0)
    q = cloud(5_000, 10, scale=12.0)
    tree = spatial.cKDTree(pts.double().numpy())
    for k in (1, 3, 8):
        sd, si = tree.query(q.double().numpy(), k=k)
        d, i = knn(pts, k, q)
        torch.testing.assert_close(d, torch.from_numpy(sd).float().reshape(-1, k))
        assert torch.equal(i, torch.from_numpy(si).long().reshape(-1, k))
    sd, si = tree.query(pts.double().numpy(), k=4)
    d, i = knn(pts, 4)
    torch.testing.assert_close(d, torch.from_numpy(sd).float())
    assert torch.equal(i, torch.from_numpy(si).long())


def test_dtypes_and_layouts() -> None:
    pts = cloud(1000, 12)
    base = knn(pts, 5)
    assert_same(knn(pts.double(), 5), base)
    assert_same(knn(pts.t().contiguous().t(), 5), base)  # non-contiguous view
    half = pts.half()
    assert_same(knn(half, 5), knn(half.float(), 5))
    d, i = knn(pts.requires_grad_(), 5)
    assert not d.requires_grad


def test_empty_inputs() -> None:
    d, i = knn(torch.empty(0, 3), 3)
    assert d.shape == (0, 3) and i.shape == (0, 3) and i.dtype == torch.int64
    d, i = knn(cloud(5, 0), 2, torch.empty(0, 3))
    assert d.shape == (0, 2)
    with pytest.raises(ValueError, match="k=1 exceeds"):
        knn(torch.empty(0, 3), 1, cloud(2, 0))
    assert knn_scale_init(torch.empty(0, 3)).shape == (0,)


@pytest.mark.usefixtures("op_backend")  # Rust and the public torch branch
def test_bad_inputs() -> None:
    pts = cloud(10, 0)
    with pytest.raises(TypeError, match="points"):
        knn(pts.numpy(), 3)
    with pytest.raises(TypeError, match="points"):
        knn(torch.zeros(10, 3, dtype=torch.int64), 3)
    with pytest.raises(TypeError, match="queries"):
        knn(pts, 3, torch.zeros(4, 3, dtype=torch.int32))
    for bad in (torch.zeros(10, 2), torch.zeros(30), torch.zeros(2, 10, 3)):
        with pytest.raises(ValueError, match="points"):
            knn(bad, 1)
    with pytest.raises(ValueError, match="queries"):
        knn(pts, 1, torch.zeros(4, 4))
    for val in (float("nan"), float("inf")):
        bad = pts.clone()
        bad[3, 1] = val
        with pytest.raises(ValueError, match="points contains NaN"):
            knn(bad, 1)
        with pytest.raises(ValueError, match="queries contains NaN"):
            knn(pts, 1, bad)
    for k in (0, -2):
        with pytest.raises(ValueError, match="k must be at least 1"):
            knn(pts, k)
    for k in (1.5, "3", True):
        with pytest.raises(TypeError, match="k must be an int"):
            knn(pts, k)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="k=11 exceeds the number of points N = 10"):
        knn(pts, 11)
    with pytest.raises(ValueError, match="k=11 exceeds"):
        knn(pts, 11, cloud(3, 1))
    with pytest.raises(ValueError, match="k=10 exceeds the number of other points"):
        knn(pts, 10, exclude_self=True)
    with pytest.raises(ValueError, match="exclude_self"):
        knn(pts, 2, pts, exclude_self=True)
    with pytest.raises(TypeError, match="exclude_self"):
        knn(pts, 2, exclude_self=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="same device"):
        knn(pts, 2, torch.zeros(3, 3, device="meta"))
    with pytest.raises(ValueError, match="k=10 exceeds"):
        knn_scale_init(pts, k=10)


def test_rust_errors_name_the_argument() -> None:
    import numpy as np
    from raysplat import _core

    with pytest.raises(ValueError, match="points"):
        _core.knn(np.zeros(10, dtype=np.float32), 1)
    with pytest.raises(ValueError, match="points: contains NaN"):
        _core.knn(np.full(9, np.nan, dtype=np.float32), 1)
    with pytest.raises(ValueError, match="k: must be at least 1"):
        _core.knn(np.zeros(9, dtype=np.float32), 0)
    with pytest.raises(ValueError, match="k: k=4 exceeds"):
        _core.knn(np.zeros(9, dtype=np.float32), 4)
    with pytest.raises(ValueError, match="exclude_self"):
        _core.knn(np.zeros(9, dtype=np.float32), 1, np.zeros(3, dtype=np.float32), True)
    with pytest.raises(ValueError, match="C-contiguous"):
        _core.knn(np.zeros((3, 6), dtype=np.float32)[:, ::2], 1)


def test_deterministic_across_runs_and_threads() -> None:
    pts = gridded(20_000, 13, step=0.05)
    first = knn(pts, 6)
    assert_same(knn(pts, 6), first)
    before = raysplat.get_num_threads()
    try:
        raysplat.set_num_threads(1)
        assert_same(knn(pts, 6), first)
        raysplat.set_num_threads(3)
        assert_same(knn(pts, 6), first)
    finally:
        raysplat.set_num_threads(before)


def test_reference_fallback_path(monkeypatch: pytest.MonkeyPatch) -> None:
    pts = gridded(800, 14)
    q = cloud(50, 15)
    rust = (knn(pts, 5), knn(pts, 5, exclude_self=True), knn(pts, 5, q))
    monkeypatch.setattr(_checks, "use_rust", lambda *tensors: False)
    fallback = (knn(pts, 5), knn(pts, 5, exclude_self=True), knn(pts, 5, q))
    for a, b in zip(rust, fallback, strict=True):
        assert_same(a, b)


def test_reference_small_chunks() -> None:
    pts = gridded(300, 16)
    whole = reference.knn(pts, 7)
    assert_same(reference.knn(pts, 7, max_elements=1), whole)
    assert_same(reference.knn(pts, 7, max_elements=1000), whole)


def test_knn_scale_init() -> None:
    pts = torch.cat([cloud(1000, 17), cloud(1000, 17)[:10]])
    s = knn_scale_init(pts)
    assert s.shape == (1010,) and s.dtype == torch.float32
    d, _ = reference.knn(pts, 3, exclude_self=True)
    torch.testing.assert_close(s, d.mean(1).clamp_min(1e-7).log())
    s5 = knn_scale_init(pts.double(), k=5)
    torch.testing.assert_close(s5, reference.knn(pts, 5, exclude_self=True)[0].mean(1).log())
    same = knn_scale_init(torch.zeros(4, 3))
    torch.testing.assert_close(same, torch.full((4,), torch.tensor(1e-7).log().item()))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    pts = gridded(5000, 18)
    q = cloud(500, 19)
    for args in ((pts, 4), (pts, 4, q)):
        cpu = knn(*args)
        gpu = knn(*(a.cuda() if isinstance(a, torch.Tensor) else a for a in args))
        assert gpu[0].device.type == "cuda" and gpu[1].device.type == "cuda"
        assert_same((gpu[0].cpu(), gpu[1].cpu()), cpu)
    ex = knn(pts.cuda(), 3, exclude_self=True)
    assert_same((ex[0].cpu(), ex[1].cpu()), knn(pts, 3, exclude_self=True))
    torch.testing.assert_close(knn_scale_init(pts.cuda()).cpu(), knn_scale_init(pts))
