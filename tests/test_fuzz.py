"""Property fuzzing: any input either gives a correctly shaped result or a TypeError /
ValueError — never a panic, a crash or another exception type."""

from __future__ import annotations

import numpy as np
import pytest
import raysplat as rs
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SPECIAL = [0.0, -0.0, 1e-30, 1e-7, 0.5, 1.0, 2.0, 1e30, -1.0, -1e30, 3.4e38]
values = st.one_of(st.sampled_from(SPECIAL), st.floats(-10, 10, allow_nan=False, width=32))
FUZZ = settings(max_examples=50, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def tensor_of(draw, shape):
    n = int(np.prod(shape)) if len(shape) else 1
    vals = draw(st.lists(values, min_size=n, max_size=n))
    return torch.tensor(vals, dtype=torch.float32).reshape(shape)


def run(fn, *args, **kwargs):
    """The result, or None for TypeError / ValueError; anything else fails the test."""
    try:
        return fn(*args, **kwargs)
    except (TypeError, ValueError):
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
    out = run(rs.render_weight_from_density, ts, te, sig, ray_indices=ri, n_rays=n_rays)
    if out is not None:
        assert len(out) == 3
        for o in out:
            assert o.shape == shape
    out = run(rs.render_weight_from_alpha, sig, ray_indices=ri, n_rays=n_rays)
    if out is not None:
        assert out[0].shape == shape and out[1].shape == shape


@FUZZ
@given(data=st.data())
def test_fuzz_accumulate_along_rays(data):
    shape, ri, n_rays = data.draw(layouts())
    w = tensor_of(data.draw, shape)
    c = data.draw(st.sampled_from([None, 1, 3]))
    v = None if c is None else tensor_of(data.draw, (*shape, c))
    out = run(rs.accumulate_along_rays, w, v, ray_indices=ri, n_rays=n_rays)
    if out is not None:
        assert out.shape == (_expected_rays(ri, n_rays, shape), c or 1)
    for scan in (rs.inclusive_sum, rs.exclusive_prod):
        out = run(scan, w, ray_indices=ri, n_rays=n_rays)
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
    out = run(rs.importance_sampling, edges, w, n, stratified)
    if out is not None:
        assert out.shape == (r, n + 1)
    u = tensor_of(data.draw, (r, data.draw(st.integers(0, 4))))
    out = run(rs.inverse_cdf, edges, w, u)
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
    out = run(rs.stratified_samples, t_near, t_far, n, spacing, stratified)
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
    )
    if out is not None:
        assert out[0].shape == (pix.shape[0], 3) and out[1].shape == (pix.shape[0], 3)
        assert bool(((pix >= 0) & (pix < total)).all())
