"""Samplers and the interlevel loss: Rust vs twin, closed forms, distributional checks."""

from __future__ import annotations

import numpy as np
import pytest
import raysplat as rs
import torch
from raysplat.reference import sampling as ref
from raysplat.sampling import OuterMeasure
from scipy import stats
from torch.autograd import gradcheck
from torch.testing import assert_close

# every test runs on the Rust path and on the public torch branch (what CUDA tensors take)
pytestmark = pytest.mark.usefixtures("op_backend")

SPACINGS = ["linear", "disparity", "contracted"]


def _g(seed):
    return torch.Generator().manual_seed(seed)


def _bounds(n=6):
    near = torch.rand(n) * 0.5 + 0.1
    far = near + torch.rand(n) * 10 + 0.5
    return near, far


def _contract(t):
    return torch.where(t <= 1, t, 2 - 1 / t)


# ------------------------------------------------------------------------ stratified samples


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("stratified", [False, True])
def test_stratified_matches_twin(spacing, stratified):
    near, far = _bounds()
    got = rs.stratified_samples(near, far, 16, spacing, stratified, generator=_g(7))
    jitter = torch.rand((6, 17), generator=_g(7)) if stratified else None
    want = ref.stratified_edges(near, far, 16, spacing, jitter)
    assert got.shape == (6, 17)
    assert_close(got, want)


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("stratified", [False, True])
def test_stratified_sorted_and_in_range(spacing, stratified):
    near, far = _bounds(20)
    e = rs.stratified_samples(near, far, 32, spacing, stratified, generator=_g(1))
    assert bool((e[:, 1:] >= e[:, :-1]).all())
    assert bool((e >= near[:, None]).all()) and bool((e <= far[:, None]).all())
    if not stratified:
        assert_close(e[:, 0], near, rtol=2e-6, atol=0)
        assert_close(e[:, -1], far, rtol=2e-6, atol=0)


def test_unstratified_ends_are_exact():
    e = rs.stratified_samples(torch.tensor([0.3]), torch.tensor([7.0]), 8, "contracted", stratified=False)
    assert float(e[0, 0]) == float(torch.tensor(0.3))
    assert float(e[0, -1]) == 7.0


@pytest.mark.parametrize("spacing", SPACINGS)
def test_stratified_seeded_determinism(spacing):
    near, far = _bounds()
    a = rs.stratified_samples(near, far, 8, spacing, True, generator=_g(42))
    b = rs.stratified_samples(near, far, 8, spacing, True, generator=_g(42))
    c = rs.stratified_samples(near, far, 8, spacing, True, generator=_g(43))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_linear_closed_form():
    near, far = _bounds()
    e = rs.stratified_samples(near, far, 10, "linear", stratified=False)
    k = torch.arange(11) / 10
    assert_close(e, near[:, None] + (far - near)[:, None] * k)


def test_disparity_closed_form():
    near, far = _bounds()
    e = rs.stratified_samples(near, far, 10, "disparity", stratified=False)
    k = torch.arange(11) / 10
    assert_close(1 / e, (1 / near)[:, None] * (1 - k) + (1 / far)[:, None] * k)
    d = torch.diff(1 / e, dim=1)
    assert_close(d, d[:, :1].expand_as(d), rtol=1e-4, atol=1e-5)


def test_contracted_closed_form():
    near = torch.tensor([0.0, 0.2, 0.5, 2.0])
    far = torch.tensor([0.8, 5.0, 100.0, 50.0])
    e = rs.stratified_samples(near, far, 12, "contracted", stratified=False)
    s = _contract(e)
    k = torch.arange(13) / 12
    a, b = _contract(near), _contract(far)
    assert_close(s, a[:, None] + (b - a)[:, None] * k, rtol=1e-5, atol=1e-5)


def test_stratified_jitter_stays_in_stratum():
    near, far = _bounds()
    n = 8
    e = rs.stratified_samples(near, far, n, "linear", True, generator=_g(5))
    k = torch.arange(n + 1)
    lo = ((k - 0.5) / n).clamp(min=0)
    hi = ((k + 0.5) / n).clamp(max=1)
    s = (e - near[:, None]) / (far - near)[:, None]
    assert bool((s >= lo - 1e-5).all()) and bool((s <= hi + 1e-5).all())


def test_stratified_float_bounds_broadcast():
    e = rs.stratified_samples(torch.tensor([0.5, 1.0, 2.0]), 6.0, 4, stratified=False)
    assert e.shape == (3, 5)
    assert torch.equal(e[:, -1], torch.full((3,), 6.0))
    e2 = rs.stratified_samples(2.0, 6.0, 4, stratified=False)
    assert_close(e2, torch.tensor([[2.0, 3.0, 4.0, 5.0, 6.0]]))
    e3 = rs.stratified_samples(
        torch.tensor([[1.0], [2.0]]), torch.tensor([[3.0], [4.0]]), 2, stratified=False
    )
    assert_close(e3, torch.tensor([[1.0, 2.0, 3.0], [2.0, 3.0, 4.0]]))


def test_stratified_zero_length_interval():
    e = rs.stratified_samples(torch.tensor([1.0]), torch.tensor([1.0]), 4, "disparity", True, _g(0))
    assert torch.equal(e, torch.ones(1, 5))


# ---------------------------------------------------------------------- importance sampling


def _histogram(r=5, b=12, zero_bins=True):
    edges = torch.cat([torch.zeros(r, 1), (torch.rand(r, b) + 0.05).cumsum(-1)], -1)
    w = torch.rand(r, b)
    if zero_bins:
        w[:, 3] = 0
        w[0, :] = 0  # a zero-mass ray
    return edges, w


@pytest.mark.parametrize("stratified", [False, True])
@pytest.mark.parametrize("n_samples", [1, 2, 7, 33])
def test_importance_sampling_matches_twin(stratified, n_samples):
    edges, w = _histogram()
    got = rs.importance_sampling(edges, w, n_samples, stratified, generator=_g(3))
    jitter = torch.rand((5,), generator=_g(3)) if stratified else None
    want = ref.importance_sampling(edges, w, n_samples, jitter)
    assert got.shape == (5, n_samples + 1)
    assert_close(got, want)
    assert bool((got[:, 1:] >= got[:, :-1]).all())
    assert bool((got >= edges[:, :1]).all()) and bool((got <= edges[:, -1:]).all())


def test_importance_sampling_seeded_determinism():
    edges, w = _histogram()
    a = rs.importance_sampling(edges, w, 16, True, generator=_g(11))
    b = rs.importance_sampling(edges, w, 16, True, generator=_g(11))
    assert torch.equal(a, b)


def test_importance_sampling_nerfacc_example():
    e = rs.importance_sampling(
        torch.tensor([[0.0, 1.0, 2.0]]), torch.tensor([[1.0, 1.0]]), 2, stratified=False
    )
    assert_close(e, torch.tensor([[0.0, 1.0, 2.0]]))


def test_importance_sampling_zero_weights_fall_back_to_uniform():
    edges = torch.tensor([[0.0, 1.0, 3.0, 4.0], [2.0, 2.5, 3.0, 6.0]])
    e = rs.importance_sampling(edges, torch.zeros(2, 3), 8, stratified=False)
    want = edges[:, :1] + (edges[:, -1:] - edges[:, :1]) * torch.linspace(0, 1, 9)
    assert_close(e, want)


def test_importance_sampling_bin_mass():
    """Each bin receives n * w_b / sum(w) samples, up to rounding."""
    edges = torch.tensor([[0.0, 1.0, 1.5, 4.0, 4.2, 6.0, 7.0]])
    w = torch.tensor([[0.1, 0.3, 0.0, 0.25, 0.15, 0.2]])
    n = 400
    e = rs.importance_sampling(edges, w, n, stratified=False)
    p = (w / w.sum())[0]
    # the sample positions themselves: F^-1((k + 0.5) / n)
    u = ((torch.arange(n) + 0.5) / n)[None]
    t = rs.inverse_cdf(edges, w, u)[0]
    # interior edges are midpoints between consecutive samples
    assert_close(e[0, 1:-1], 0.5 * (t[1:] + t[:-1]))
    interior = e[0, 1:-1]
    for b in range(6):
        lo, hi = float(edges[0, b]), float(edges[0, b + 1])
        frac_samples = float(((t >= lo) & (t < hi)).float().mean())
        assert abs(frac_samples - float(p[b])) <= 1.0 / n + 1e-6
        frac_edges = float(((interior >= lo) & (interior < hi)).float().sum()) / n
        assert abs(frac_edges - float(p[b])) <= 2.0 / n + 1e-6


# ------------------------------------------------------------------------------ inverse CDF


def test_inverse_cdf_matches_twin():
    edges, w = _histogram()
    u = torch.rand(5, 50)
    u[:, 0] = 0.0
    u[:, 1] = 1.0
    assert_close(rs.inverse_cdf(edges, w, u), ref.inverse_cdf(edges, w, u))


def test_inverse_cdf_ks_against_piecewise_linear_cdf():
    b = 10
    edges = torch.cat([torch.zeros(1), (torch.rand(b) + 0.1).cumsum(0)])[None]
    w = torch.rand(1, b) + 0.01
    w[0, 4] = 0.0
    u = torch.rand((1, 200_000), generator=_g(2024))
    t = rs.inverse_cdf(edges, w, u)[0].double().numpy()
    xp = edges[0].double().numpy()
    fp = np.concatenate([[0.0], np.cumsum(w[0].double().numpy())])
    fp /= fp[-1]

    def cdf(x):
        return np.interp(x, xp, fp)

    res = stats.kstest(t, cdf)
    assert res.pvalue > 1e-3, res
    assert t.min() >= xp[0] and t.max() <= xp[-1]
    # nothing lands strictly inside the zero-weight bin
    assert not bool(((t > xp[4] + 1e-5) & (t < xp[5] - 1e-5)).any())


# --------------------------------------------------------------------------- interlevel loss


def _outer_loop(pe, pw, e):
    """mip-NeRF 360 outer measure: summed proposal weight of overlapping proposal intervals."""
    r, s = e.shape[0], e.shape[1] - 1
    p = pw.shape[1]
    out = torch.zeros(r, s, dtype=pw.dtype)
    for i in range(r):
        for k in range(s):
            a, b = float(e[i, k]), float(e[i, k + 1])
            out[i, k] = sum(
                float(pw[i, j]) for j in range(p) if float(pe[i, j]) <= b and float(pe[i, j + 1]) > a
            )
    return out


def _loop_loss(pe, pw, e, w):
    eps = torch.finfo(torch.float32).eps
    wo = _outer_loop(pe, pw, e)
    tot, cnt = 0.0, 0
    for i in range(w.shape[0]):
        for k in range(w.shape[1]):
            d = max(float(w[i, k]) - float(wo[i, k]), 0.0)
            tot += d * d / (float(w[i, k]) + eps)
            cnt += 1
    return tot / cnt


def _two_histograms(r=3, p=6, s=9, dtype=torch.float32):
    pe = torch.cat([torch.zeros(r, 1), (torch.rand(r, p) + 0.1).cumsum(-1)], -1).to(dtype)
    e = torch.sort(torch.rand(r, s + 1), -1).values.to(dtype) * pe[:, -1:] * 1.2 - 0.1
    pw = torch.rand(r, p, dtype=dtype)
    w = torch.rand(r, s, dtype=dtype)
    return pe, pw, e, w


def test_outer_measure_matches_loop_and_twin():
    pe, pw, e, w = _two_histograms()
    got = OuterMeasure.apply(pe, pw, e)
    assert_close(got, _outer_loop(pe, pw, e))
    assert_close(got, ref.outer_measure(pe, pw, e))


def test_interlevel_loss_matches_python_loop():
    pe, pw, e, w = _two_histograms()
    loss = rs.interlevel_loss(pe, pw, e, w)
    assert loss.dim() == 0
    assert abs(float(loss) - _loop_loss(pe, pw, e, w)) < 1e-5


def test_interlevel_loss_identical_histograms_is_zero():
    edges, w = _histogram(4, 10, zero_bins=False)
    # w_outer >= w exactly up to the rounding of a cumsum difference
    assert float(rs.interlevel_loss(edges, w, edges, w)) < 1e-12


def test_interlevel_loss_halved_proposal_is_positive():
    edges = torch.linspace(0, 1, 8)[None]
    w = torch.tensor([[0.01, 0.01, 0.9, 0.01, 0.01, 0.01, 0.01]])
    assert float(rs.interlevel_loss(edges, w * 0.5, edges, w)) > 0.0


def test_interlevel_loss_grad_matches_twin():
    pe, pw, e, w = _two_histograms(r=4)
    pw.requires_grad_(True)
    loss = rs.interlevel_loss(pe, pw * 0.3, e, w)
    (g,) = torch.autograd.grad(loss, pw)
    eps = torch.finfo(torch.float32).eps
    wo = ref.outer_measure(pe, pw * 0.3, e)
    loss_t = (torch.clamp(w - wo, min=0) ** 2 / (w + eps)).mean()
    (gt,) = torch.autograd.grad(loss_t, pw)
    assert_close(loss, loss_t)
    assert_close(g, gt)
    assert float(g.abs().sum()) > 0


def test_outer_measure_gradcheck():
    pe, pw, e, _ = _two_histograms(dtype=torch.float64)
    pw.requires_grad_(True)
    assert gradcheck(lambda x: OuterMeasure.apply(pe, x, e), (pw,))


def test_interlevel_loss_gradcheck():
    """NeRF weights well above any outer measure keep every term away from the max(0, .) kink."""
    pe, pw, e, _ = _two_histograms(dtype=torch.float64)
    pw = (pw * 0.05).requires_grad_(True)
    w = torch.rand(e.shape[0], e.shape[1] - 1, dtype=torch.float64) + 1.0
    assert bool((w - ref.outer_measure(pe, pw, e) > 0.1).all())
    assert gradcheck(lambda x: rs.interlevel_loss(pe, x, e, w), (pw,))
