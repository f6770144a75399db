"""Hash-grid encoding: Rust kernel vs its torch twin (float32 / float64, forward and gradient),
gradcheck through Rust, the torch path forced by ``backend("torch")``, and bad inputs."""

from __future__ import annotations

import pytest
import raysplat.hashgrid as hg
import torch
from raysplat import _checks
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
