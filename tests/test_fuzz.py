"""Property fuzzing: any input either gives a correctly shaped result or a TypeError /
ValueError — never a panic, a crash or another exception type; an input the docs call valid
must succeed with finite outputs that agree with ``backend("torch")``."""

from __future__ import annotations

import numpy as np
import pytest
import raysplat as rs
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SPECIAL = [0.0, -0.0, 1e-30, 1e-7, 0.5, 1.0, 2.0, 1e30, -1.0, -1e30, 3.4e38]
values = st.one_of(st.sampled_from(SPECIAL), st.floats(-10, 10, allow_nan=False, width=32))
FUZZ = settings(
    max_examples=50,
    deadline=None,
    database=None,
    derandomize=True,  # the same examples on every run: CI must not depend on luck
    suppress_health_check=[HealthCheck.too_slow],
)


def tensor_of(draw, shape):
    n = int(np.prod(shape)) if len(shape) else 1
    vals = draw(st.lists(values, min_size=n, max_size=n))
    return torch.tensor(vals, dtype=torch.float32).reshape(shape)


def run(fn, *args, valid=False, **kwargs):
    """The result, or None for TypeError / ValueError (a failure when ``valid``); anything else
    fails the test."""
    try:
        return fn(*args, **kwargs)
    except (TypeError, ValueError) as e:
        if valid:
            pytest.fail(f"valid input rejected: {type(e).__name__}: {e}")
        return None
    except BaseException as e:
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        pytest.fail(f"{type(e).__name__} escaped: {e}")


@st.composite
def ray_indices(draw, n):
    """(ray_indices or None, n_rays or None) for n packed samples — sometimes invalid."""
    n_rays = draw(st.integers(0, 6))
    ri = draw(st.lists(st.integers(-1, 7), min_size=n, max_size=n))
    if draw(st.booleans()):
        ri = sorted(ri)
    return torch.tensor(ri, dtype=torch.long), draw(st.sampled_from([None, n_rays]))


@st.composite
def layouts(draw):
    """(sample shape, ray_indices, n_rays)."""
    if draw(st.booleans()):
        return (draw(st.integers(0, 4)), draw(st.integers(0, 5))), None, None
    n = draw(st.integers(0, 12))
    ri, n_rays = draw(ray_indices(n))
    return (n,), ri, n_rays


def _valid_layout(ri, n_rays, sorted_only=True):
    """Whether (ray_indices, n_rays) is a layout the docs accept (dense when ``ri`` is None)."""
    if ri is None:
        return True
    if ri.numel() and int(ri.min()) < 0:
        return False
    if sorted_only and ri.numel() and not bool((ri[1:] >= ri[:-1]).all()):
        return False
    return n_rays is None or not ri.numel() or int(ri.max()) < n_rays


def _finite(*ts):
    return all(bool(torch.isfinite(t).all()) for t in ts)


def _flat(out):
    return [out] if isinstance(out, torch.Tensor) else list(out)


def agrees_with_torch(fn, *args, seed=None, atol=1e-5, rtol=1e-4, **kwargs):
    """Runs ``fn`` (default backend) and under ``backend("torch")``; both must succeed with
    finite, close results (``seed``: a fresh generator per run). Returns the default's result."""
    gen = (lambda: {"generator": torch.Generator().manual_seed(seed)}) if seed is not None else dict
    out = run(fn, *args, valid=True, **kwargs, **gen())
    with rs.backend("torch"):
        want = run(fn, *args, valid=True, **kwargs, **gen())
    for o, w in zip(_flat(out), _flat(want), strict=True):
        assert o.shape == w.shape
        if o.dtype.is_floating_point:
            assert _finite(o), o
            torch.testing.assert_close(o, w.to(o.dtype), atol=atol, rtol=rtol)
        else:
            assert torch.equal(o, w)
    return out


TAME = st.one_of(st.sampled_from([0.0, 1e-30, 1e-7, 0.5, 1.0, 2.0, 100.0]), st.floats(0, 10, width=32))


def tame_of(draw, shape, elements=TAME):
    n = int(np.prod(shape)) if len(shape) else 1
    return torch.tensor(draw(st.lists(elements, min_size=n, max_size=n)), dtype=torch.float32).reshape(shape)


@st.composite
def valid_layouts(draw):
    """(sample shape, ray_indices, n_rays) that the docs accept: dense, or sorted in range."""
    if draw(st.booleans()):
        return (draw(st.integers(0, 4)), draw(st.integers(0, 5))), None, None
    n_rays = draw(st.integers(0, 6))
    n = draw(st.integers(0, 12)) if n_rays else 0
    ri = sorted(draw(st.lists(st.integers(0, max(n_rays - 1, 0)), min_size=n, max_size=n)))
    return (n,), torch.tensor(ri, dtype=torch.long), draw(st.sampled_from([None, n_rays]))


def _expected_rays(ri, n_rays, shape):
    if ri is None:
        return shape[0]
    return n_rays if n_rays is not None else (int(ri.max()) + 1 if ri.numel() else 0)


@FUZZ
@given(data=st.data())
def test_fuzz_render_weight_from_density(data):
    shape, ri, n_rays = data.draw(layouts())
    ts = tensor_of(data.draw, shape)
    te = ts + tensor_of(data.draw, shape).abs() if data.draw(st.booleans()) else tensor_of(data.draw, shape)
    sig = tensor_of(data.draw, shape)
    # the Rust kernel also rejects an overflowing optical thickness sigma * dt (documented)
    ok = _valid_layout(ri, n_rays) and _finite(ts, te, sig, sig * (te - ts))
    out = run(rs.render_weight_from_density, ts, te, sig, ray_indices=ri, n_rays=n_rays, valid=ok)
    if out is not None:
        assert len(out) == 3
        for o in out:
            assert o.shape == shape
    ok = _valid_layout(ri, n_rays) and _finite(sig)
    out = run(rs.render_weight_from_alpha, sig, ray_indices=ri, n_rays=n_rays, valid=ok)
    if out is not None:
        assert out[0].shape == shape and out[1].shape == shape


@FUZZ
@given(data=st.data())
def test_fuzz_accumulate_along_rays(data):
    shape, ri, n_rays = data.draw(layouts())
    w = tensor_of(data.draw, shape)
    c = data.draw(st.sampled_from([None, 1, 3]))
    v = None if c is None else tensor_of(data.draw, (*shape, c))
    ok = _finite(w) and (v is None or _finite(v))
    out = run(
        rs.accumulate_along_rays,
        w,
        v,
        ray_indices=ri,
        n_rays=n_rays,
        valid=ok and _valid_layout(ri, n_rays, False),
    )
    if out is not None:
        assert out.shape == (_expected_rays(ri, n_rays, shape), c or 1)
    for scan in (rs.inclusive_sum, rs.exclusive_prod):
        out = run(scan, w, ray_indices=ri, n_rays=n_rays, valid=ok and _valid_layout(ri, n_rays))
        if out is not None:
            assert out.shape == shape


@FUZZ
@given(data=st.data())
def test_fuzz_importance_sampling(data):
    r = data.draw(st.integers(0, 4))
    b = data.draw(st.integers(0, 6))
    edges = tensor_of(data.draw, (r, b + 1))
    if data.draw(st.booleans()):
        edges = edges.sort(-1).values
    w = tensor_of(data.draw, (r, b))
    if data.draw(st.booleans()):
        w = w.abs()
    n = data.draw(st.integers(-1, 20))
    stratified = data.draw(st.booleans())
    hist_ok = (
        b >= 1 and _finite(edges, w) and bool((w >= 0).all()) and bool((edges[:, 1:] >= edges[:, :-1]).all())
    )
    out = run(rs.importance_sampling, edges, w, n, stratified, valid=hist_ok and n >= 1)
    if out is not None:
        assert out.shape == (r, n + 1)
    u = tensor_of(data.draw, (r, data.draw(st.integers(0, 4))))
    out = run(rs.inverse_cdf, edges, w, u, valid=hist_ok)
    if out is not None:
        assert out.shape == u.shape


@FUZZ
@given(
    near=values,
    far=values,
    per_ray=st.booleans(),
    n_rays=st.integers(0, 4),
    n=st.integers(-1, 20),
    spacing=st.sampled_from(["linear", "disparity", "contracted", "log"]),
    stratified=st.booleans(),
)
def test_fuzz_stratified_samples(near, far, per_ray, n_rays, n, spacing, stratified):
    if per_ray:
        t_near = torch.full((n_rays,), near)
        t_far = torch.full((n_rays,), far)
        expect_rays = n_rays
    else:
        t_near, t_far, expect_rays = near, far, 1
    valid = (
        n >= 1
        and near <= far
        and (
            spacing == "linear"
            or (spacing == "disparity" and near > 0)
            or (spacing == "contracted" and near >= 0)
        )
    )
    out = run(rs.stratified_samples, t_near, t_far, n, spacing, stratified, valid=valid)
    if out is not None:
        assert out.shape == (expect_rays, n + 1)
        if expect_rays and near <= far and abs(far) < 1e30 and abs(near) < 1e30:
            assert bool((out[:, 1:] >= out[:, :-1]).all())


@FUZZ
@given(
    data=st.data(),
    cams=st.integers(1, 3),
    width=st.integers(0, 5),
    height=st.integers(1, 5),
    convention=st.sampled_from(["opengl", "opencv", "bad"]),
    jitter=st.booleans(),
    normalize=st.booleans(),
)
def test_fuzz_generate_rays_pixels(data, cams, width, height, convention, jitter, normalize):
    total = cams * max(width, 1) * height
    pix = torch.tensor(data.draw(st.lists(st.integers(-3, total + 3), max_size=10)), dtype=torch.long)
    c2w = torch.eye(4).repeat(cams, 1, 1)
    c2w[:, :3, 3] = tensor_of(data.draw, (cams, 3))
    K = torch.tensor([[data.draw(values), 0, 1.0], [0, data.draw(values), 1.0], [0, 0, 1]])
    valid = (
        width >= 1
        and convention != "bad"
        and bool(((pix >= 0) & (pix < total)).all())
        and K[0, 0] != 0
        and K[1, 1] != 0
        and _finite(c2w, K)
    )
    out = run(
        rs.generate_rays,
        c2w,
        K,
        width,
        height,
        convention,
        pixels=pix,
        jitter=jitter,
        normalize=normalize,
        valid=valid,
    )
    if out is not None:
        assert out[0].shape == (pix.shape[0], 3) and out[1].shape == (pix.shape[0], 3)
        assert bool(((pix >= 0) & (pix < total)).all())


# ------------------------------------------------------------- valid inputs: agree with torch


@FUZZ
@given(data=st.data())
def test_fuzz_valid_volume_rendering_agrees_with_torch(data):
    shape, ri, n_rays = data.draw(valid_layouts())
    ts = tame_of(data.draw, shape)
    te = ts + tame_of(data.draw, shape)
    sig = tame_of(data.draw, shape)
    kw = {"ray_indices": ri, "n_rays": n_rays}
    w, _, _ = agrees_with_torch(rs.render_weight_from_density, ts, te, sig, **kw)
    assert bool((w >= 0).all()) and bool((rs.accumulate_along_rays(w, **kw) <= 1.0 + 1e-5).all())
    alphas = tame_of(data.draw, shape, st.floats(0, 1, width=32))
    agrees_with_torch(rs.render_weight_from_alpha, alphas, **kw)
    c = data.draw(st.integers(1, 4))
    rgbs = tame_of(data.draw, (*shape, c), st.floats(0, 1, width=32))
    agrees_with_torch(rs.accumulate_along_rays, w, rgbs, **kw)
    agrees_with_torch(rs.volume_render, ts, te, sig, rgbs, **kw)
    agrees_with_torch(rs.inclusive_sum, sig, **kw)
    agrees_with_torch(rs.exclusive_prod, alphas, **kw)


def assert_valid_inverse(edges, weights, u, t, tol):
    """``t`` is an inverse of each ray's CDF at ``u``: ``F(t-) - tol <= u <= F(t+) + tol`` (float64).

    Comparing ``t`` between backends is ill-posed where the CDF is flat (zero-weight bins) or a
    bin has zero width: ``F^{-1}`` jumps there, and a one-ulp difference in the normalised knots
    moves the jump (seen: u = 1 with a trailing zero-weight bin gave 0 in one backend, 0.25 in
    the other, both exact inverses). Checking ``F`` at the result is the real property."""
    e, w = edges.double(), weights.double()
    for r in range(e.shape[0]):
        total = float(w[r].sum())
        widths = e[r, 1:] - e[r, :-1]
        mass = w[r] if total > 0 else (widths if float(widths.sum()) > 0 else torch.ones_like(widths))
        knots = torch.cat([torch.zeros(1, dtype=torch.float64), mass.cumsum(0) / mass.sum()])
        for uu, tt in zip(u[r].double().clamp(0, 1).tolist(), t[r].double().tolist(), strict=True):
            assert float(e[r, 0]) - tol <= tt <= float(e[r, -1]) + tol, (tt, e[r])
            at = (e[r] - tt).abs() <= tol
            # every bin that [tt - tol, tt + tol] reaches: a float32 t is exact only to ~1 ulp,
            # which in a narrow bin is a large step in u (seen: a 0.001-wide bin at t = 4)
            inside = (e[r, :-1] < tt + tol) & (tt - tol < e[r, 1:])
            vals = list(knots[at].tolist())
            for b in torch.nonzero(inside).flatten().tolist():
                lo, hi = float(e[r, b]), float(e[r, b + 1])
                if hi <= lo:
                    continue
                for x in (max(tt - tol, lo), min(tt + tol, hi)):
                    frac = (x - lo) / (hi - lo)
                    vals.append(float(knots[b] + frac * (knots[b + 1] - knots[b])))
            assert vals and min(vals) - tol <= uu <= max(vals) + tol, (uu, tt, e[r], w[r])


@FUZZ
@given(data=st.data())
def test_fuzz_valid_sampling_agrees_with_torch(data):
    r, b = data.draw(st.integers(0, 4)), data.draw(st.integers(1, 6))
    edges = torch.cat([tame_of(data.draw, (r, 1)), tame_of(data.draw, (r, b))], 1).cumsum(1)
    w = tame_of(data.draw, (r, b))
    n = data.draw(st.integers(1, 20))
    stratified = data.draw(st.booleans())
    out = agrees_with_torch(rs.importance_sampling, edges, w, n, stratified, seed=1, atol=1e-4)
    assert bool((out[:, 1:] >= out[:, :-1]).all())
    u = tame_of(data.draw, (r, data.draw(st.integers(0, 4))), st.floats(0, 1, width=32))
    for which in ("auto", "torch"):
        with rs.backend(which):
            t = run(rs.inverse_cdf, edges, w, u, valid=True)
        assert t.shape == u.shape and _finite(t), t
        assert_valid_inverse(edges, w, u, t, tol=1e-4)
    spacing = data.draw(st.sampled_from(["linear", "disparity", "contracted"]))
    near = tame_of(data.draw, (r,)) + (0.01 if spacing == "disparity" else 0.0)
    far = near + tame_of(data.draw, (r,))
    agrees_with_torch(rs.stratified_samples, near, far, n, spacing, stratified, seed=2, atol=1e-4)


@FUZZ
@given(
    data=st.data(),
    cams=st.integers(1, 3),
    width=st.integers(1, 5),
    height=st.integers(1, 5),
    convention=st.sampled_from(["opengl", "opencv"]),
    jitter=st.booleans(),
    normalize=st.booleans(),
)
def test_fuzz_valid_generate_rays_agrees_with_torch(data, cams, width, height, convention, jitter, normalize):
    total = cams * width * height
    pix = torch.tensor(data.draw(st.lists(st.integers(0, total - 1), max_size=10)), dtype=torch.long)
    c2w = torch.eye(4).repeat(cams, 1, 1)
    c2w[:, :3, 3] = tame_of(data.draw, (cams, 3))
    f = tame_of(data.draw, (2,), st.floats(0.125, 100, width=32))
    K = torch.tensor([[float(f[0]), 0, 1.0], [0, float(f[1]), 1.0], [0, 0, 1]])
    agrees_with_torch(
        rs.generate_rays,
        c2w,
        K,
        width,
        height,
        convention,
        pixels=pix,
        jitter=jitter,
        normalize=normalize,
        seed=3,
    )
