"""Segmented scans and pack_info: Rust vs twin, gradients, nerfacc's documented example."""

from __future__ import annotations

import pytest
import raysplat as rs
import torch
from raysplat.reference import scan as ref
from torch.autograd import gradcheck
from torch.testing import assert_close

# every test runs on the Rust path and on the public torch branch (what CUDA tensors take)
pytestmark = pytest.mark.usefixtures("op_backend")

SCANS = {
    "inclusive_sum": (rs.inclusive_sum, "sum", False),
    "exclusive_sum": (rs.exclusive_sum, "sum", True),
    "inclusive_prod": (rs.inclusive_prod, "prod", False),
    "exclusive_prod": (rs.exclusive_prod, "prod", True),
}
LAYOUTS = ["dense", "ray_indices", "packed_info"]


def _layout(kind, packed):
    if kind == "dense":
        return (4, 6), {}, None
    if kind == "ray_indices":
        return (
            (packed.n,),
            {"ray_indices": packed.ray_indices, "n_rays": packed.n_rays},
            packed.offsets,
        )
    return (packed.n,), {"packed_info": packed.packed_info}, packed.offsets


@pytest.mark.parametrize("name", list(SCANS))
@pytest.mark.parametrize("kind", LAYOUTS)
def test_scan_matches_twin(name, kind, packed):
    fn, op, exclusive = SCANS[name]
    shape, kw, offsets = _layout(kind, packed)
    x = (torch.rand(shape) + 0.5).requires_grad_(True)
    out = fn(x, **kw)
    want = ref.scan(x, offsets, op, exclusive)
    assert out.shape == shape
    assert_close(out, want)
    up = torch.randn(shape)
    (g,) = torch.autograd.grad((out * up).sum(), x)
    (gw,) = torch.autograd.grad((want * up).sum(), x)
    assert_close(g, gw)


@pytest.mark.parametrize("name", list(SCANS))
@pytest.mark.parametrize("kind", LAYOUTS)
def test_scan_gradcheck(name, kind, packed):
    fn, _, _ = SCANS[name]
    shape, kw, _ = _layout(kind, packed)
    if kind == "dense":
        shape = (2, 5)
    x = (torch.rand(shape, dtype=torch.float64) + 0.5).requires_grad_(True)
    assert gradcheck(lambda a: fn(a, **kw), (x,))


@pytest.mark.parametrize("name", ["inclusive_prod", "exclusive_prod"])
@pytest.mark.parametrize("kind", LAYOUTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_prod_with_zero_input(name, kind, dtype, packed):
    """Zeros in a product scan: forward and gradient equal the twin's (no division by x)."""
    fn, op, exclusive = SCANS[name]
    shape, kw, offsets = _layout(kind, packed)
    x = torch.rand(shape, dtype=dtype) + 0.5
    flat = x.view(-1)
    flat[0] = 0.0
    flat[4] = 0.0
    flat[9] = 0.0
    x.requires_grad_(True)
    out = fn(x, **kw)
    want = ref.scan(x, offsets, op, exclusive)
    assert_close(out, want)
    up = torch.randn(shape, dtype=dtype)
    (g,) = torch.autograd.grad((out * up).sum(), x)
    (gw,) = torch.autograd.grad((want * up).sum(), x)
    assert bool(torch.isfinite(g).all())
    assert_close(g, gw)
    if dtype == torch.float64:
        # gradcheck around a zero (the scan is polynomial, so finite differences are exact)
        assert gradcheck(lambda a: fn(a, **kw), (x.detach().clone().requires_grad_(True),))


def test_nerfacc_docstring_example():
    x = torch.arange(1.0, 10.0)
    packed_info = torch.tensor([[0, 2], [2, 3], [5, 4]])
    assert_close(rs.exclusive_sum(x, packed_info=packed_info), torch.tensor([0.0, 1, 0, 3, 7, 0, 6, 13, 21]))
    assert_close(
        rs.inclusive_sum(x, packed_info=packed_info),
        torch.tensor([1.0, 3, 3, 7, 12, 6, 13, 21, 30]),
    )
    assert_close(
        rs.inclusive_prod(x, packed_info=packed_info),
        torch.tensor([1.0, 2, 3, 12, 60, 6, 42, 336, 3024]),
    )
    assert_close(
        rs.exclusive_prod(x, packed_info=packed_info),
        torch.tensor([1.0, 1, 1, 3, 12, 1, 6, 42, 336]),
    )
    ri = torch.tensor([0, 0, 1, 1, 1, 2, 2, 2, 2])
    assert torch.equal(rs.exclusive_sum(x, ray_indices=ri), rs.exclusive_sum(x, packed_info=packed_info))


def test_dense_scan_equals_cumsum():
    x = torch.rand(3, 7)
    assert_close(rs.inclusive_sum(x), x.cumsum(1))
    assert_close(rs.inclusive_prod(x), x.cumprod(1))
    assert_close(rs.exclusive_sum(x)[:, 1:], x.cumsum(1)[:, :-1])
    assert torch.equal(rs.exclusive_sum(x)[:, 0], torch.zeros(3))
    assert torch.equal(rs.exclusive_prod(x)[:, 0], torch.ones(3))


def test_pack_info_equals_bincount_cumsum(packed):
    info = rs.pack_info(packed.ray_indices, packed.n_rays)
    counts = torch.bincount(packed.ray_indices, minlength=packed.n_rays)
    starts = counts.cumsum(0) - counts
    assert info.dtype == torch.int64
    assert torch.equal(info, torch.stack([starts, counts], -1))
    assert torch.equal(info, packed.packed_info)


def test_pack_info_default_n_rays():
    ri = torch.tensor([0, 0, 2, 2, 2, 5], dtype=torch.int32)
    info = rs.pack_info(ri)
    assert info.shape == (6, 2)
    assert torch.equal(info[:, 1], torch.tensor([2, 0, 3, 0, 0, 1]))
    assert torch.equal(info[:, 0], torch.tensor([0, 2, 2, 5, 5, 5]))


def test_pack_info_random():
    for _ in range(5):
        n_rays = int(torch.randint(1, 30, ()))
        ri = torch.randint(0, n_rays, (int(torch.randint(0, 100, ())),)).sort().values
        info = rs.pack_info(ri, n_rays)
        counts = torch.bincount(ri, minlength=n_rays)
        assert torch.equal(info, torch.stack([counts.cumsum(0) - counts, counts], -1))
