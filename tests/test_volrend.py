"""Volume rendering: Rust kernels vs the torch twins, gradients, quadrature properties."""

from __future__ import annotations

import pytest
import raysplat as rs
import torch
from raysplat.reference import volrend as ref
from raysplat.reference.scan import scan as ref_scan
from torch.autograd import gradcheck
from torch.testing import assert_close

# every test runs on the Rust path and on the public torch branch (what CUDA tensors take)
pytestmark = pytest.mark.usefixtures("op_backend")

LAYOUTS = ["dense", "packed"]


def _layout(kind, packed):
    """(sample shape, public-API kwargs, twin offsets, twin ray_indices, n_rays)."""
    if kind == "dense":
        return (4, 6), {}, None, None, 4
    kw = {"ray_indices": packed.ray_indices, "n_rays": packed.n_rays}
    return (packed.n,), kw, packed.offsets, packed.ray_indices, packed.n_rays


def _grads(outs, inputs, upstream):
    loss = sum((o * g).sum() for o, g in zip(outs, upstream, strict=True))
    return torch.autograd.grad(loss, inputs, allow_unused=True)


# --------------------------------------------------------------------- weights from density


@pytest.mark.parametrize("kind", LAYOUTS)
def test_weights_from_density_matches_twin(kind, packed, intervals):
    shape, kw, offsets, _, _ = _layout(kind, packed)
    ts, te, sig = intervals(shape, requires_grad=True)
    out = rs.render_weight_from_density(ts, te, sig, **kw)
    want = ref.weights_from_density(sig * (te - ts), offsets)
    for o, w in zip(out, want, strict=True):
        assert o.shape == shape and o.dtype == torch.float32
        assert_close(o, w)
    up = [torch.randn(shape) for _ in range(3)]
    assert_close(_grads(out, (ts, te, sig), up), _grads(want, (ts, te, sig), up))


@pytest.mark.parametrize("kind", LAYOUTS)
def test_weights_from_density_single_output_grads(kind, packed, intervals):
    """Gradients when only one of the three outputs is used (the others get None grads)."""
    shape, kw, offsets, _, _ = _layout(kind, packed)
    ts, te, sig = intervals(shape, requires_grad=True)
    for i in range(3):
        out = rs.render_weight_from_density(ts, te, sig, **kw)[i]
        want = ref.weights_from_density(sig * (te - ts), offsets)[i]
        up = torch.randn(shape)
        assert_close(_grads([out], (sig,), [up]), _grads([want], (sig,), [up]))


def test_weights_from_density_grads_of_densities_only(intervals):
    """Interval bounds without gradients (the usual case) take the kernel's no-`t` path."""
    ts, te, sig = intervals((6, 10), requires_grad=True)
    ts, te = ts.detach(), te.detach()
    w = rs.render_weight_from_density(ts, te, sig)[0]
    want = ref.weights_from_density(sig * (te - ts), None)[0]
    up = torch.randn(6, 10)
    assert_close(_grads([w], (sig,), [up]), _grads([want], (sig,), [up]))


@pytest.mark.parametrize("kind", LAYOUTS)
def test_weights_from_density_gradcheck(kind, packed, intervals):
    shape, kw, _, _, _ = _layout(kind, packed)
    if kind == "dense":
        shape = (2, 4)
    ts, te, sig = intervals(shape, dtype=torch.float64, requires_grad=True)

    def f(a, b, c):
        return rs.render_weight_from_density(a, b, c, **kw)

    assert gradcheck(f, (ts, te, sig), eps=1e-6, atol=1e-5)


def test_sum_of_weights_is_one_minus_final_transmittance(intervals):
    ts, te, sig = intervals((5, 16))
    w, trans, alphas = rs.render_weight_from_density(ts, te, sig)
    final_t = trans[:, -1] * (1 - alphas[:, -1])
    assert_close(w.sum(-1), 1 - final_t)
    assert_close(trans[:, 0], torch.ones(5))
    assert bool((w >= 0).all()) and bool((trans <= 1).all())


def test_sum_of_weights_packed(packed, intervals):
    ts, te, sig = intervals((packed.n,))
    w, trans, alphas = rs.render_weight_from_density(
        ts, te, sig, ray_indices=packed.ray_indices, n_rays=packed.n_rays
    )
    for r in range(packed.n_rays):
        a, b = int(packed.offsets[r]), int(packed.offsets[r + 1])
        if a == b:
            continue
        assert_close(w[a:b].sum(), 1 - trans[b - 1] * (1 - alphas[b - 1]))
        assert_close(trans[a], torch.tensor(1.0))


def test_zero_density_gives_zero_weights():
    ts = torch.linspace(0, 1, 9)[:-1].repeat(3, 1)
    te = ts + 0.125
    w, trans, alphas = rs.render_weight_from_density(ts, te, torch.zeros(3, 8))
    assert torch.equal(w, torch.zeros(3, 8))
    assert torch.equal(trans, torch.ones(3, 8))
    assert torch.equal(alphas, torch.zeros(3, 8))


def test_default_n_rays_from_ray_indices(packed, intervals):
    ts, te, sig = intervals((packed.n,))
    a = rs.render_weight_from_density(ts, te, sig, ray_indices=packed.ray_indices)
    b = rs.render_weight_from_density(ts, te, sig, ray_indices=packed.ray_indices, n_rays=packed.n_rays)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)


# ----------------------------------------------------------------------- weights from alpha


@pytest.mark.parametrize("kind", LAYOUTS)
def test_weights_from_alpha_matches_twin(kind, packed):
    shape, kw, offsets, _, _ = _layout(kind, packed)
    a = torch.rand(shape).requires_grad_(True)
    out = rs.render_weight_from_alpha(a, **kw)
    want = ref.weights_from_alpha(a, offsets)
    assert_close(out, want)
    up = [torch.randn(shape) for _ in range(2)]
    assert_close(_grads(out, (a,), up), _grads(want, (a,), up))


@pytest.mark.parametrize("kind", LAYOUTS)
def test_weights_from_alpha_gradcheck(kind, packed):
    shape, kw, _, _, _ = _layout(kind, packed)
    if kind == "dense":
        shape = (2, 5)
    a = (torch.rand(shape, dtype=torch.float64) * 0.9 + 0.05).requires_grad_(True)
    assert gradcheck(lambda x: rs.render_weight_from_alpha(x, **kw), (a,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("kind", LAYOUTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_weights_from_alpha_gradient_at_alpha_one(kind, packed, dtype):
    """alpha = 1 makes the later transmittances exactly 0; the gradient must stay exact."""
    shape, kw, offsets, _, _ = _layout(kind, packed)
    a = torch.rand(shape, dtype=dtype)
    flat = a.view(-1)
    flat[1] = 1.0
    flat[5] = 1.0
    flat[-1] = 1.0
    a.requires_grad_(True)
    out = rs.render_weight_from_alpha(a, **kw)
    want = ref.weights_from_alpha(a, offsets)
    assert_close(out, want)
    up = [torch.randn(shape, dtype=dtype) for _ in range(2)]
    got, exp = _grads(out, (a,), up), _grads(want, (a,), up)
    assert bool(torch.isfinite(got[0]).all())
    assert_close(got, exp)


def test_alpha_and_density_agree(intervals):
    ts, te, sig = intervals((3, 7))
    w, trans, alphas = rs.render_weight_from_density(ts, te, sig)
    w2, trans2 = rs.render_weight_from_alpha(alphas)
    assert_close(w, w2)
    assert_close(trans, trans2)


# ------------------------------------------------------------------------------ accumulate


def _acc_layout(kind, packed):
    if kind == "dense":
        return (4, 6), {}, None, 4
    if kind == "packed":
        return (
            (packed.n,),
            {"ray_indices": packed.ray_indices, "n_rays": packed.n_rays},
            packed.ray_indices,
            packed.n_rays,
        )
    perm = torch.randperm(packed.n, generator=torch.Generator().manual_seed(3))
    ri = packed.ray_indices[perm]
    assert bool((ri[1:] < ri[:-1]).any())
    return (packed.n,), {"ray_indices": ri, "n_rays": packed.n_rays}, ri, packed.n_rays


ACC_LAYOUTS = ["dense", "packed", "unsorted"]


@pytest.mark.parametrize("kind", ACC_LAYOUTS)
@pytest.mark.parametrize("channels", [None, 1, 3])
def test_accumulate_matches_twin(kind, channels, packed):
    shape, kw, ri, n_rays = _acc_layout(kind, packed)
    w = torch.rand(shape).requires_grad_(True)
    v = None if channels is None else torch.randn(*shape, channels).requires_grad_(True)
    out = rs.accumulate_along_rays(w, v, **kw)
    want = ref.accumulate(w, v, ri, n_rays)
    assert out.shape == (n_rays, channels or 1)
    assert_close(out, want)
    inputs = (w,) if v is None else (w, v)
    up = [torch.randn(out.shape)]
    assert_close(_grads([out], inputs, up), _grads([want], inputs, up))


@pytest.mark.parametrize("kind", ACC_LAYOUTS)
def test_accumulate_gradcheck(kind, packed):
    shape, kw, _, _ = _acc_layout(kind, packed)
    if kind == "dense":
        shape = (2, 3)
    w = torch.rand(shape, dtype=torch.float64).requires_grad_(True)
    v = torch.randn(*shape, 2, dtype=torch.float64).requires_grad_(True)
    assert gradcheck(lambda a, b: rs.accumulate_along_rays(a, b, **kw), (w, v))
    assert gradcheck(lambda a: rs.accumulate_along_rays(a, None, **kw), (w,))


def test_accumulate_empty_rays_are_zero(packed):
    w = torch.rand(packed.n)
    out = rs.accumulate_along_rays(w, ray_indices=packed.ray_indices, n_rays=packed.n_rays)
    empty = packed.counts == 0
    assert torch.equal(out[empty], torch.zeros(int(empty.sum()), 1))


# --------------------------------------------------------------------------- volume_render


def _twin_volume_render(ts, te, sig, rgbs, offsets, ri, n_rays, bkgd=None, expected_depth=False):
    w = ref.weights_from_density(sig * (te - ts), offsets)[0]
    colors = ref.accumulate(w, rgbs, ri, n_rays)
    opac = ref.accumulate(w, None, ri, n_rays)
    depth = ref.accumulate(w, (0.5 * (ts + te))[..., None], ri, n_rays)
    if expected_depth:
        depth = depth / opac.clamp_min(torch.finfo(opac.dtype).eps)
    if bkgd is not None:
        colors = colors + (1 - opac) * bkgd
    return colors, opac, depth, w


@pytest.mark.parametrize("kind", LAYOUTS)
@pytest.mark.parametrize("bkgd", [False, True])
@pytest.mark.parametrize("expected_depth", [False, True])
def test_volume_render_matches_twin(kind, bkgd, expected_depth, packed, intervals):
    shape, kw, offsets, ri, n_rays = _layout(kind, packed)
    ts, te, sig = intervals(shape, requires_grad=True)
    rgbs = torch.rand(*shape, 3).requires_grad_(True)
    bg = torch.rand(3) if bkgd else None
    out = rs.volume_render(ts, te, sig, rgbs, render_bkgd=bg, expected_depth=expected_depth, **kw)
    want = _twin_volume_render(ts, te, sig, rgbs, offsets, ri, n_rays, bg, expected_depth)
    assert out[0].shape == (n_rays, 3) and out[1].shape == (n_rays, 1) and out[2].shape == (n_rays, 1)
    assert_close(out, want)
    up = [torch.randn(o.shape) for o in out]
    inputs = (ts, te, sig, rgbs)
    assert_close(_grads(out, inputs, up), _grads(want, inputs, up))


@pytest.mark.parametrize("kind", LAYOUTS)
def test_volume_render_gradcheck(kind, packed, intervals):
    shape, kw, _, _, _ = _layout(kind, packed)
    if kind == "dense":
        shape = (2, 4)
    ts, te, sig = intervals(shape, dtype=torch.float64, requires_grad=True)
    rgbs = torch.rand(*shape, 3, dtype=torch.float64).requires_grad_(True)
    bg = torch.rand(3, dtype=torch.float64)

    def f(a, b, c, d):
        return rs.volume_render(a, b, c, d, render_bkgd=bg, **kw)

    assert gradcheck(f, (ts, te, sig, rgbs), eps=1e-6, atol=1e-5)


def test_volume_render_white_background_on_empty_scene():
    ts = torch.linspace(0, 1, 5)[:-1].repeat(2, 1)
    out = rs.volume_render(ts, ts + 0.25, torch.zeros(2, 4), torch.rand(2, 4, 3), render_bkgd=torch.ones(3))
    assert_close(out[0], torch.ones(2, 3))
    assert_close(out[1], torch.zeros(2, 1))


# ---------------------------------------------------------------------------------- nerfacc


def test_against_nerfacc(intervals):
    nerfacc = pytest.importorskip("nerfacc")
    ts, te, sig = intervals((4, 8))
    w, trans, alphas = rs.render_weight_from_density(ts, te, sig)
    nw, ntrans, nalphas = nerfacc.render_weight_from_density(ts, te, sig)
    assert_close(w, nw)
    assert_close(trans, ntrans)
    assert_close(alphas, nalphas)
    v = torch.rand(4, 8, 3)
    assert_close(rs.accumulate_along_rays(w, v), nerfacc.accumulate_along_rays(nw, v))


# ------------------------------------------------------------- in-place edits after forward


def _inplace_cases():
    def alpha(x):
        a = x * 1.0
        out = rs.render_weight_from_alpha(a)[0]
        a.mul_(0.5)
        return out

    def accumulate(x):
        v = torch.ones(*x.shape, 3) * 1.0
        vv = v * 2.0
        out = rs.accumulate_along_rays(x, vv)
        vv.mul_(0.0)
        return out

    def scan(x):
        a = x * 1.0
        out = rs.inclusive_prod(a)
        a.mul_(0.5)
        return out

    return {"alpha": alpha, "accumulate": accumulate, "scan": scan}


@pytest.mark.parametrize("op", ["alpha", "accumulate", "scan"])
def test_inplace_edit_of_saved_input_is_detected(op):
    x = (torch.rand(2, 4) * 0.8 + 0.1).requires_grad_(True)
    out = _inplace_cases()[op](x)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        torch.autograd.grad(out.sum(), x)


@pytest.mark.parametrize("op", ["density", "accumulate", "scan"])
def test_inplace_edit_of_output_works_like_twin(op):
    """Scaling an output in place gives the gradient of the scaled output, as with the twin."""
    s = torch.rand(2, 4, requires_grad=True)
    ts = torch.rand(2, 4)
    te = ts + 0.1
    if op == "density":
        out = rs.render_weight_from_density(ts, te, s)[0]
        want = ref.weights_from_density(s * (te - ts), None)[0]
    elif op == "accumulate":
        out = rs.accumulate_along_rays(s)
        want = ref.accumulate(s, None, None, 2)
    else:
        out = rs.inclusive_sum(s)
        want = ref_scan(s, None, "sum", False)
    out.mul_(2.0)
    up = torch.randn(out.shape)
    (g,) = torch.autograd.grad((out * up).sum(), s)
    (g_want,) = torch.autograd.grad((2.0 * want * up).sum(), s)
    assert g.shape == s.shape
    assert_close(g, g_want)


def test_non_contiguous_inputs(intervals):
    ts, te, sig = (x.t() for x in intervals((6, 4)))
    assert not sig.is_contiguous()
    out = rs.render_weight_from_density(ts, te, sig)
    assert_close(out, ref.weights_from_density(sig * (te - ts), None))
    v = torch.rand(6, 4, 3).permute(1, 0, 2)[..., :2]
    assert_close(rs.accumulate_along_rays(out[0], v), ref.accumulate(out[0], v, None, 4))
