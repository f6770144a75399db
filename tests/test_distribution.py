"""render_distribution (NeRDF): Rust vs the torch twin vs a brute-force loop, float64 gradcheck,
the basis properties of algorithms.md section 3.7 (1, 2, 4), and argument errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import raysplat as rs
import torch
from raysplat.distribution import distribution_taus
from raysplat.reference import distribution as ref
from torch.autograd import gradcheck
from torch.testing import assert_close

BACKENDS = ["auto", "torch"]


def _coeffs(n, dtype=torch.float32, scale=0.6, requires_grad=False):
    c = (torch.randn(n, 4, 24, dtype=dtype) * scale).requires_grad_(requires_grad)
    return c


def _brute(coeffs, taus, near, far, last_delta):
    """Python loops with math.sin / math.cos and the textbook quadrature (independent oracle)."""
    c = coeffs.double().numpy()
    n, s = c.shape[0], taus.shape[-1]
    tau = np.broadcast_to(taus.double().numpy(), (n, s))
    out = np.zeros((n, 5))
    for r in range(n):
        t = [near + x * (far - near) for x in tau[r]]
        acc = 0.0
        for j in range(s):
            b = [1.0] + [0.0] * 23
            for m in range(1, 13):
                b[2 * m - 1] = math.sin(2 * math.pi * m * tau[r, j])
                if m <= 11:
                    b[2 * m] = math.cos(2 * math.pi * m * tau[r, j])
            raw = [sum(c[r, ch, i] * b[i] for i in range(24)) for ch in range(4)]
            sigma = max(raw[0], 0.0)
            delta = t[j + 1] - t[j] if j + 1 < s else last_delta
            w = math.exp(-acc) * (1 - math.exp(-sigma * delta))
            acc += sigma * delta
            for k in range(3):
                out[r, k] += w / (1 + math.exp(-raw[k + 1]))
            out[r, 3] += w
            out[r, 4] += w * t[j]
    return torch.from_numpy(out)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("stratified", [False, True])
def test_matches_twin_and_brute_force(backend, stratified):
    c = _coeffs(37, requires_grad=True)
    near, far = torch.rand(37) + 0.5, torch.rand(37) + 3.0
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    with rs.backend(backend):
        out = rs.render_distribution(
            c, 24, near, far, stratified=stratified, generator=g1, return_samples=True
        )
    taus = distribution_taus(24, 37, stratified, g2)
    want = ref.render_distribution(c, taus, near, far, None, "relu", 1e10)
    assert out.colors.shape == (37, 3) and out.opacities.shape == (37, 1) and out.depths.shape == (37, 1)
    assert out.sigmas.shape == (37, 24) and out.t.shape == (37, 24)
    assert_close(out.colors, want[0])
    assert_close(out.opacities[:, 0], want[1])
    assert_close(out.depths[:, 0], want[2], rtol=1e-5, atol=1e-4)
    assert_close(out.sigmas, want[3], rtol=1e-4, atol=5e-5)  # f32 sin of arguments up to 24 pi
    assert_close(out.t, near[:, None] + taus * (far - near)[:, None])
    ups = [torch.randn(37, 3), torch.randn(37, 1), torch.randn(37, 1), torch.randn(37, 24)]
    loss = sum((o * u).sum() for o, u in zip(out[:4], ups, strict=True))
    (g,) = torch.autograd.grad(loss, c)
    wl = sum((o.reshape(u.shape) * u).sum() for o, u in zip(want, ups, strict=True))
    (gw,) = torch.autograd.grad(wl, c)
    assert_close(g, gw, rtol=1e-4, atol=1e-4)
    if not stratified:  # brute force on a few rays with scalar bounds
        out = rs.render_distribution(c[:4].detach().double(), 9, 1.0, 3.0)
        b = _brute(c[:4].detach(), distribution_taus(9, 4), 1.0, 3.0, 1e10)
        assert_close(out.colors, b[:, :3])
        assert_close(out.opacities[:, 0], b[:, 3])
        assert_close(out.depths[:, 0], b[:, 4])


@pytest.mark.parametrize("activation", ["relu", "softplus"])
def test_gradcheck_float64_through_rust(activation):
    c = _coeffs(4, torch.float64, requires_grad=True)
    near, far = torch.tensor([0.5, 1.0, 1.5, 2.0], dtype=torch.float64), 4.0
    gen = torch.Generator().manual_seed(0)
    taus = distribution_taus(7, 4, True, gen, dtype=torch.float64)

    def f(x):
        with rs.backend("rust"):
            o = rs.render_distribution(
                x, 7, near, far, taus=taus, sigma_activation=activation, last_delta=0.5, return_samples=True
            )
        return o.colors, o.opacities, o.depths, o.sigmas

    assert gradcheck(f, (c,))

    # shared taus, noise, the paper's last_delta
    def g(x):
        with rs.backend("rust"):
            o = rs.render_distribution(
                x,
                5,
                near,
                far,
                sigma_activation=activation,
                sigma_noise_std=0.5,
                generator=torch.Generator().manual_seed(3),
            )
        return o.colors, o.opacities

    assert gradcheck(g, (c,))


def test_rust_basis_values_orthogonality_and_fit():
    """section 3.7 (1, 2): the kernel's basis (read through one-hot sigma coefficients) equals
    sin / cos, is orthogonal on [0, 1] with norms 1 and 1/2, B(0) = [1, 0, 1, 0, ...], and a
    least-squares fit of a band-limited signal recovers its coefficients."""
    q = 4096
    taus = (torch.arange(q, dtype=torch.float64) + 0.5) / q  # midpoint rule: exact for these
    eye = torch.zeros(24, 4, 24, dtype=torch.float64)
    eye[:, 0, :] = torch.eye(24, dtype=torch.float64)
    with rs.backend("rust"):
        b = rs.render_distribution(eye, q, 0.0, 1.0, taus=taus, return_samples=True).sigmas.T  # [q, 24]
    assert_close(b, ref.basis(taus), atol=1e-12, rtol=0)
    gram = b.T @ b / q
    want = torch.diag(torch.tensor([1.0] + [0.5] * 23, dtype=torch.float64))
    assert_close(gram, want, atol=1e-10, rtol=0)
    b0 = ref.basis(torch.zeros(1, dtype=torch.float64))[0]
    assert b0.tolist() == [1.0 if i % 2 == 0 else 0.0 for i in range(24)]
    phi = torch.randn(24, dtype=torch.float64)
    fit = torch.linalg.lstsq(b, b @ phi[:, None]).solution[:, 0]
    assert_close(fit, phi, atol=1e-10, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_periodic_sigma_near_equals_far(backend):
    """section 3.7 (2): period 1, so the raw density at near equals the one at far for any
    coefficients (documented in raysplat.distribution)."""
    c = _coeffs(50, torch.float64)
    with rs.backend(backend):
        o = rs.render_distribution(c, 33, 2.0, 6.0, return_samples=True)
    assert_close(o.sigmas[:, 0], o.sigmas[:, -1], atol=1e-10, rtol=0)
    assert float(o.t[0, 0]) == 2.0 and float(o.t[0, -1]) == 6.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_constant_density_weights_sum_to_one(backend):
    """section 3.7 (4): constant sigma0 > 0, equispaced samples, the 1e10 last interval."""
    c = torch.zeros(8, 4, 24)
    c[:, 0, 0] = torch.linspace(0.01, 5.0, 8)
    with rs.backend(backend):
        o = rs.render_distribution(c, 64, 2.0, 6.0)
    assert_close(o.opacities, torch.ones(8, 1), atol=1e-6, rtol=0)
    # and with a finite last interval: sum w = 1 - exp(-sigma0 * (far - near + last))
    c64 = c.double()
    with rs.backend(backend):
        o = rs.render_distribution(c64, 64, 2.0, 6.0, last_delta=0.25)
    want = 1 - torch.exp(-c64[:, 0, 0] * 4.25)
    assert_close(o.opacities[:, 0], want)


def test_background_and_empty():
    c = torch.zeros(3, 4, 24)
    o = rs.render_distribution(c, 8, 0.0, 1.0, render_bkgd=torch.tensor([0.2, 0.4, 0.6]))
    assert_close(o.colors, torch.tensor([[0.2, 0.4, 0.6]]).expand(3, 3))
    e = rs.render_distribution(torch.zeros(0, 4, 24), 8, 0.0, 1.0, return_samples=True)
    assert e.colors.shape == (0, 3) and e.sigmas.shape == (0, 8)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_inputs_name_the_argument(backend):
    c = torch.zeros(4, 4, 24)
    with rs.backend(backend):
        with pytest.raises(ValueError, match="coeffs"):
            rs.render_distribution(torch.zeros(4, 4, 23), 8, 0.0, 1.0)
        with pytest.raises(TypeError, match="coeffs"):
            rs.render_distribution(np.zeros((4, 4, 24)), 8, 0.0, 1.0)
        bad = c.clone()
        bad[1, 2, 3] = float("nan")
        with pytest.raises(ValueError, match="coeffs"):
            rs.render_distribution(bad, 8, 0.0, 1.0)
        with pytest.raises(ValueError, match="n_samples"):
            rs.render_distribution(c, 0, 0.0, 1.0)
        with pytest.raises(ValueError, match="near"):
            rs.render_distribution(c, 8, torch.zeros(3), 1.0)
        with pytest.raises(ValueError, match="far"):
            rs.render_distribution(c, 8, 2.0, 1.0)
        with pytest.raises(ValueError, match="taus"):
            rs.render_distribution(c, 8, 0.0, 1.0, taus=torch.linspace(1, 0, 8))
        with pytest.raises(ValueError, match="taus"):
            rs.render_distribution(c, 8, 0.0, 1.0, taus=torch.linspace(0, 1, 7))
        with pytest.raises(ValueError, match="sigma_activation"):
            rs.render_distribution(c, 8, 0.0, 1.0, sigma_activation="exp")
        with pytest.raises(ValueError, match="last_delta"):
            rs.render_distribution(c, 8, 0.0, 1.0, last_delta=-1.0)
        with pytest.raises(ValueError, match="sigma_noise_std"):
            rs.render_distribution(c, 8, 0.0, 1.0, sigma_noise_std=-1.0)
        with pytest.raises(ValueError, match="render_bkgd"):
            rs.render_distribution(c, 8, 0.0, 1.0, render_bkgd=torch.zeros(4))
        with pytest.raises(ValueError, match="same device"):
            rs.render_distribution(c, 8, torch.zeros(4, device="meta"), 1.0)


def test_stratified_is_seeded_and_in_strata():
    a = distribution_taus(16, 5, True, torch.Generator().manual_seed(2))
    b = distribution_taus(16, 5, True, torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    assert bool((a.diff(dim=1) >= 0).all()) and float(a.min()) >= 0 and float(a.max()) <= 1
    grid = torch.linspace(0, 1, 16)
    assert bool(((a - grid).abs() <= 0.5 / 15 + 1e-7).all())
