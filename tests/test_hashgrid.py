"""Hash-grid encoding: Rust kernel vs its torch twin (float32 / float64, forward and gradient),
gradcheck through Rust, the torch path forced by ``backend("torch")``, and bad inputs."""

from __future__ import annotations

import pytest
import raysplat.hashgrid as hg
import torch
from raysplat import _checks
from raysplat._checks import backend
from raysplat.hashgrid import hashgrid_encode
from raysplat.reference.hashgrid import hashgrid_encode as hashgrid_twin

RES = [2, 5, 40]  # dense, dense, hashed levels for a 64-row table


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hashgrid_rust_matches_twin(dtype, gen):
    x = torch.rand(300, 3, generator=gen, dtype=dtype) * 1.2 - 0.1  # some outside: clamped
    table = (torch.rand(3, 64, 2, generator=gen, dtype=dtype) - 0.5).requires_grad_()
    out = hashgrid_encode(x, table, RES)
    g = torch.randn(out.shape, generator=gen, dtype=dtype)
    (grad,) = torch.autograd.grad(out, table, g)
    out_t = hashgrid_twin(x, table, RES)
    (grad_t,) = torch.autograd.grad(out_t, table, g)
    assert out.shape == (300, 6) and out.dtype == dtype
    torch.testing.assert_close(out, out_t)
    torch.testing.assert_close(grad, grad_t)


def test_hashgrid_gradcheck(gen):
    x = torch.rand(7, 3, generator=gen, dtype=torch.float64)
    table = torch.rand(3, 64, 2, generator=gen, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: hashgrid_encode(x, t, RES), (table,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hashgrid_point_gradient_matches_twin(dtype, gen):
    x = (torch.rand(300, 3, generator=gen, dtype=dtype) * 1.2 - 0.1).requires_grad_()  # some clamped
    table = (torch.rand(3, 64, 2, generator=gen, dtype=dtype) - 0.5).requires_grad_()
    out = hashgrid_encode(x, table, RES)
    g = torch.randn(out.shape, generator=gen, dtype=dtype)
    gx, gt = torch.autograd.grad(out, (x, table), g)
    gx_t, gt_t = torch.autograd.grad(hashgrid_twin(x, table, RES), (x, table), g)
    torch.testing.assert_close(gx, gx_t)
    torch.testing.assert_close(gt, gt_t)
    outside = (x.detach() < 0) | (x.detach() > 1)
    assert bool(outside.any()) and bool((gx[outside] == 0).all())
    (only_x,) = torch.autograd.grad(hashgrid_encode(x, table.detach(), RES), x, g)  # table constant
    torch.testing.assert_close(only_x, gx)


def test_hashgrid_gradcheck_points(gen):
    x = (torch.rand(7, 3, generator=gen, dtype=torch.float64) * 0.9 + 0.05).requires_grad_()
    table = torch.rand(3, 64, 2, generator=gen, dtype=torch.float64).requires_grad_()
    # piecewise trilinear: finite differences of a small step stay inside the points' cells
    assert torch.autograd.gradcheck(lambda p, t: hashgrid_encode(p, t, RES), (x, table), eps=1e-7)


def test_hashgrid_rejects_bad_input():
    with pytest.raises(ValueError, match="power of two"):
        hashgrid_encode(torch.rand(4, 3), torch.zeros(1, 100, 2), [4])
    with pytest.raises(ValueError, match="resolutions"):
        hashgrid_encode(torch.rand(4, 3), torch.zeros(2, 64, 2), [4])
    with pytest.raises(ValueError, match="NaN"):
        hashgrid_encode(torch.full((1, 3), float("nan")), torch.zeros(1, 64, 2), [4])


def test_hashgrid_backend_torch_matches_rust(gen):
    x = torch.rand(50, 3, generator=gen)
    table = torch.rand(3, 64, 2, generator=gen) - 0.5
    with _checks.backend("torch"):
        out_t = hashgrid_encode(x, table, RES)
    torch.testing.assert_close(hashgrid_encode(x, table, RES), out_t)


def test_hashgrid_is_the_nerf_export():
    import raysplat
    import raysplat.nerf

    assert raysplat.nerf.hashgrid_encode is hg.hashgrid_encode is raysplat.hashgrid_encode


@pytest.mark.parametrize("which", ["auto", "torch"])
def test_dense_level_interpolates_a_linear_table_exactly(which, gen):
    """Semantics, not transliteration: on a dense level (``(r + 1)^3 <= T``) the table row of
    vertex (i, j, k) is ``i + j (r + 1) + k (r + 1)^2``; filling it with a linear function of the
    vertex position makes trilinear interpolation reproduce that function at every point."""
    r, size = 5, 256
    a = torch.tensor([[0.7, -1.3], [2.0, 0.5], [-0.4, 1.1]], dtype=torch.float64)  # [3, F]
    b = torch.tensor([0.25, -0.75], dtype=torch.float64)
    ijk = torch.stack(torch.meshgrid(*[torch.arange(r + 1)] * 3, indexing="ij"), -1).reshape(-1, 3)
    rows = ijk[:, 0] + ijk[:, 1] * (r + 1) + ijk[:, 2] * (r + 1) ** 2
    table = torch.zeros(1, size, 2, dtype=torch.float64)
    table[0, rows] = (ijk.double() / r) @ a + b
    x = torch.rand(200, 3, generator=gen, dtype=torch.float64)
    with backend(which):
        out = hashgrid_encode(x, table, [r])
    torch.testing.assert_close(out, x @ a + b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("which", ["auto", "torch"])
def test_hashed_level_reads_the_documented_hash_at_vertices(which):
    """On a hashed level a point on vertex (i, j, k) reads exactly row
    ``(i ^ j * 2654435761 ^ k * 805459861) mod T`` (uint32 arithmetic)."""
    r, size = 64, 1 << 10  # 65^3 > T: hashed
    table = torch.arange(size, dtype=torch.float64).reshape(1, size, 1)
    ijk = torch.tensor([[0, 0, 0], [1, 2, 3], [64, 0, 17], [13, 64, 64], [31, 7, 50]])
    x = ijk.double() / r
    want = [((i ^ (j * 2654435761) ^ (k * 805459861)) & 0xFFFFFFFF) % size for i, j, k in ijk.tolist()]
    with backend(which):
        out = hashgrid_encode(x, table, [r])
    assert out[:, 0].tolist() == [float(w) for w in want]
