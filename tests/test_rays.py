"""Camera rays, NDC warping and ray-box intersection: Rust vs twin and closed forms."""

from __future__ import annotations

import math

import pytest
import raysplat as rs
import torch
from raysplat.reference import rays as ref
from torch.testing import assert_close

# every test runs on the Rust path and on the public torch branch (what CUDA tensors take)
pytestmark = pytest.mark.usefixtures("op_backend")


def _g(seed):
    return torch.Generator().manual_seed(seed)


def _rotation(axis_angle: torch.Tensor) -> torch.Tensor:
    theta = axis_angle.norm()
    k = axis_angle / theta
    kx = torch.tensor([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return torch.eye(3) + math.sin(theta) * kx + (1 - math.cos(theta)) * kx @ kx


def _cameras(c=3):
    c2w = torch.zeros(c, 4, 4)
    for i in range(c):
        c2w[i, :3, :3] = _rotation(torch.randn(3))
        c2w[i, :3, 3] = torch.randn(3)
        c2w[i, 3, 3] = 1
    K = torch.tensor([[50.0, 0, 7.3], [0, 45.0, 4.1], [0, 0, 1]])
    return c2w, K


def _K(f, w, h):
    return torch.tensor([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1.0]])


# ----------------------------------------------------------------------------- generate_rays


@pytest.mark.parametrize("convention", ["opengl", "opencv"])
def test_centre_pixel_of_identity_camera(convention):
    o, d = rs.generate_rays(torch.eye(4), _K(10.0, 5, 7), 5, 7, convention)
    assert o.shape == (7, 5, 3) and d.shape == (7, 5, 3)
    assert torch.equal(o, torch.zeros(7, 5, 3))
    z = -1.0 if convention == "opengl" else 1.0
    assert_close(d[3, 2], torch.tensor([0.0, 0.0, z]))
    # image x grows to +x in both conventions; image y grows to -y (opengl) / +y (opencv)
    assert float(d[3, 4, 0]) > 0
    assert (float(d[6, 2, 1]) < 0) == (convention == "opengl")


@pytest.mark.parametrize("convention", ["opengl", "opencv"])
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("jitter", [False, True])
def test_generate_rays_matches_twin(convention, normalize, jitter):
    c2w, K = _cameras()
    w, h = 6, 4
    o, d = rs.generate_rays(c2w, K, w, h, convention, jitter=jitter, normalize=normalize, generator=_g(9))
    assert o.shape == (3, h, w, 3)
    n = 3 * w * h
    offsets = torch.rand((n, 2), generator=_g(9)) if jitter else None
    ro, rd = ref.generate_rays(c2w[:, :3], K.expand(3, 3, 3), w, h, convention, None, offsets, normalize)
    assert_close(o.reshape(-1, 3), ro)
    assert_close(d.reshape(-1, 3), rd)
    if normalize:
        assert_close(d.norm(dim=-1), torch.ones(3, h, w))


def test_batched_cameras_equal_single_calls():
    c2w, K = _cameras()
    o, d = rs.generate_rays(c2w, K, 5, 4)
    Ks = K.expand(3, 3, 3).clone()
    o2, d2 = rs.generate_rays(c2w[:, :3, :], Ks, 5, 4)
    assert torch.equal(o, o2) and torch.equal(d, d2)
    for i in range(3):
        oi, di = rs.generate_rays(c2w[i], K, 5, 4)
        assert torch.equal(o[i], oi) and torch.equal(d[i], di)
        assert_close(oi, c2w[i, :3, 3].expand(4, 5, 3))


def test_pixels_subset_equals_full_render():
    c2w, K = _cameras()
    w, h = 6, 5
    o, d = rs.generate_rays(c2w, K, w, h, "opencv")
    pix = torch.randint(0, 3 * w * h, (40,))
    op, dp = rs.generate_rays(c2w, K, w, h, "opencv", pixels=pix)
    assert op.shape == (40, 3)
    assert torch.equal(op, o.reshape(-1, 3)[pix])
    assert torch.equal(dp, d.reshape(-1, 3)[pix])
    op32, dp32 = rs.generate_rays(c2w, K, w, h, "opencv", pixels=pix.int())
    assert torch.equal(dp32, dp)


def test_jitter_stays_within_pixel():
    w, h = 8, 6
    K = torch.tensor([[20.0, 0, 4.0], [0, 25.0, 3.0], [0, 0, 1]])
    _, d = rs.generate_rays(torch.eye(4), K, w, h, "opencv", jitter=True, normalize=False, generator=_g(4))
    _, dc = rs.generate_rays(torch.eye(4), K, w, h, "opencv", normalize=False)
    assert_close(d[..., 2], torch.ones(h, w))
    px = d[..., 0] * 20.0 + 4.0 - torch.arange(w)[None, :]
    py = d[..., 1] * 25.0 + 3.0 - torch.arange(h)[:, None]
    assert bool(((px >= -1e-4) & (px <= 1 + 1e-4)).all())
    assert bool(((py >= -1e-4) & (py <= 1 + 1e-4)).all())
    assert not torch.equal(d, dc)
    # loosely: each jittered direction is within half a pixel diagonal of the centre direction
    assert float((d - dc)[..., :2].abs().max()) <= 0.5 / 20.0 + 1e-5
    # and it is seeded
    _, d2 = rs.generate_rays(torch.eye(4), K, w, h, "opencv", jitter=True, normalize=False, generator=_g(4))
    assert torch.equal(d, d2)


def test_unnormalized_directions_have_unit_camera_z():
    c2w, K = _cameras(1)
    _, d = rs.generate_rays(c2w[0], K, 4, 3, "opengl", normalize=False)
    cam = d.reshape(-1, 3) @ c2w[0, :3, :3]  # R^T d
    assert_close(cam[:, 2], -torch.ones(12))


# ---------------------------------------------------------------------------------- ndc_rays


def _ndc_closed_form(o, d, fx, fy, w, h, near):
    t = -(near + o[:, 2]) / d[:, 2]
    o = o + t[:, None] * d
    ox, oy, oz = o.unbind(-1)
    dx, dy, dz = d.unbind(-1)
    ax, ay = -fx / (w / 2), -fy / (h / 2)
    o_ndc = torch.stack([ax * ox / oz, ay * oy / oz, 1 + 2 * near / oz], -1)
    d_ndc = torch.stack([ax * (dx / dz - ox / oz), ay * (dy / dz - oy / oz), -2 * near / oz], -1)
    return o_ndc, d_ndc


def _llff_rays(n=50):
    o = torch.randn(n, 3) * 0.2
    d = torch.cat([torch.randn(n, 2) * 0.3, -torch.ones(n, 1)], -1)
    return o, d / d.norm(dim=-1, keepdim=True)


def test_ndc_closed_form():
    o, d = _llff_rays()
    ro, rd = rs.ndc_rays(o, d, (30.0, 35.0), 40, 30, near=1.0)
    eo, ed = _ndc_closed_form(o.double(), d.double(), 30.0, 35.0, 40, 30, 1.0)
    assert_close(ro, eo.float(), rtol=1e-4, atol=1e-5)
    assert_close(rd, ed.float(), rtol=1e-4, atol=1e-5)
    two, twd = ref.ndc_rays(o, d, 30.0, 35.0, 40.0, 30.0, 1.0)
    assert_close(ro, two)
    assert_close(rd, twd)
    # the near plane maps to NDC depth -1
    assert_close(ro[:, 2], -torch.ones(50))


def test_ndc_focal_forms_and_shapes():
    o, d = _llff_rays(12)
    K = torch.tensor([[30.0, 0, 20], [0, 35.0, 15], [0, 0, 1]])
    a = rs.ndc_rays(o, d, K, 40, 30, near=0.5)
    b = rs.ndc_rays(o, d, (30.0, 35.0), 40, 30, near=0.5)
    c = rs.ndc_rays(o.reshape(3, 4, 3), d.reshape(3, 4, 3), torch.tensor([30.0, 35.0]), 40, 30, near=0.5)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert c[0].shape == (3, 4, 3)
    assert torch.equal(c[0].reshape(-1, 3), a[0]) and torch.equal(c[1].reshape(-1, 3), a[1])
    s = rs.ndc_rays(o, d, 30.0, 40, 30)
    s2 = rs.ndc_rays(o, d, (30.0, 30.0), 40, 30)
    assert torch.equal(s[0], s2[0])


def test_points_on_ray_map_onto_ndc_ray():
    o, d = _llff_rays(20)
    fx, fy, w, h, near = 30.0, 35.0, 40, 30, 1.0
    ro, rd = rs.ndc_rays(o, d, (fx, fy), w, h, near)
    ax, ay = -fx / (w / 2), -fy / (h / 2)
    for t in (0.5, 2.0, 10.0, 100.0):
        t0 = -(near + o[:, 2]) / d[:, 2]  # where the ray crosses the near plane
        p = (o + (t0 + t)[:, None] * d).double()  # beyond the near plane (z < -near)
        assert bool((p[:, 2] < -near).all())
        q = torch.stack([ax * p[:, 0] / p[:, 2], ay * p[:, 1] / p[:, 2], 1 + 2 * near / p[:, 2]], -1)
        s = (q[:, 2] - ro[:, 2].double()) / rd[:, 2].double()
        assert bool((s > 0).all() and (s < 1 + 1e-5).all())  # NDC depth in (-1, 1)
        assert_close(ro.double() + s[:, None] * rd.double(), q, rtol=1e-4, atol=1e-4)


# -------------------------------------------------------------------------- ray_aabb_intersect


def _random_rays(n=300):
    o = torch.randn(n, 3) * 2
    d = torch.randn(n, 3)
    d[:10, 0] = 0.0  # axis-parallel directions
    d[10:15, :2] = 0.0
    return o, d / d.norm(dim=-1, keepdim=True)


BOX = torch.tensor([-1.0, -0.5, -0.8, 1.2, 0.7, 0.9])


def _inside(p, box, tol):
    return ((p >= box[:3] - tol) & (p <= box[3:] + tol)).all(-1)


def test_aabb_matches_twin():
    o, d = _random_rays()
    boxes = torch.stack([BOX, torch.tensor([0.0, 0, 0, 1, 1, 1]), torch.tensor([-3.0, -3, -3, 3, 3, 3])])
    tn, tf, hit = rs.ray_aabb_intersect(o, d, boxes)
    etn, etf, ehit = ref.ray_aabb_intersect(o, d, boxes)
    assert tn.shape == (300, 3) and hit.dtype == torch.bool
    assert torch.equal(hit, ehit)
    assert_close(tn, etn)
    assert_close(tf, etf)
    for m in range(3):
        a, b, c = rs.ray_aabb_intersect(o, d, boxes[m])
        assert a.shape == (300,)
        assert torch.equal(a, tn[:, m]) and torch.equal(b, tf[:, m]) and torch.equal(c, hit[:, m])


def test_aabb_brute_force():
    o, d = _random_rays()
    tn, tf, hit = rs.ray_aabb_intersect(o, d, BOX)
    eps = 1e-4
    assert bool(hit.any()) and bool((~hit).any())
    assert bool((tn[hit] >= 0).all()) and bool((tf[hit] >= tn[hit]).all())
    assert bool((tn[~hit] == 0).all()) and bool((tf[~hit] == 0).all())
    long = hit & (tf - tn > 4 * eps)
    for t in (tn + eps, tf - eps, 0.5 * (tn + tf)):
        p = o + t[:, None] * d
        assert bool(_inside(p[long], BOX, 1e-4).all())
    # outside the interval the ray is outside the box
    for t in (tn - 1e-2, tf + 1e-2):
        p = o + t[:, None] * d
        ok = hit & (t >= 0)
        assert not bool(_inside(p[ok], BOX, -1e-3).any())
    # dense sampling: a ray with a point clearly inside the box must hit it, misses have none
    ts = torch.linspace(0, 12, 4001)
    pts = o[:, None, :] + ts[None, :, None] * d[:, None, :]
    clearly = _inside(pts, BOX, -1e-3).any(-1)
    assert bool(hit[clearly].all())
    assert not bool(_inside(pts[~hit], BOX, -1e-3).any())


def test_rays_starting_inside_box():
    o = torch.rand(50, 3) * 0.5 - 0.25
    d = torch.randn(50, 3)
    d = d / d.norm(dim=-1, keepdim=True)
    tn, tf, hit = rs.ray_aabb_intersect(o, d, BOX)
    assert bool(hit.all())
    assert torch.equal(tn, torch.zeros(50))
    assert bool((tf > 0).all())
    assert bool(_inside(o + tf[:, None] * d, BOX, 1e-5).all())


def test_ray_pointing_away_misses():
    o = torch.tensor([[5.0, 0.0, 0.0]])
    tn, tf, hit = rs.ray_aabb_intersect(o, torch.tensor([[1.0, 0.0, 0.0]]), BOX)
    assert not bool(hit[0]) and float(tn[0]) == 0.0 and float(tf[0]) == 0.0
    tn, tf, hit = rs.ray_aabb_intersect(o, torch.tensor([[-1.0, 0.0, 0.0]]), BOX)
    assert bool(hit[0])
    assert_close(tn, torch.tensor([3.8]))
    assert_close(tf, torch.tensor([6.0]))
