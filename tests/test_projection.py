"""project_to_views: Rust kernel vs torch twin vs brute force, own-camera round trip,
float64 gradients, argument validation."""

from __future__ import annotations

import pytest
import raysplat as rs
import torch
from raysplat import projection
from raysplat.reference import projection as ref
from torch.autograd import gradcheck
from torch.testing import assert_close

# every test runs on the Rust path and on the public torch branch (what CUDA tensors take)
pytestmark = pytest.mark.usefixtures("op_backend")


def _scene(dtype=torch.float32, r=5, n=4, v=3, m=4, h=6, w=7, ch=3, seed=0):
    """Cameras near the origin looking down -z (small random rotations), points in front."""
    g = torch.Generator().manual_seed(seed)
    skew = torch.zeros(m, 3, 3, dtype=torch.float64)
    a = torch.randn(m, 3, generator=g, dtype=torch.float64) * 0.1
    skew[:, 0, 1], skew[:, 0, 2], skew[:, 1, 2] = -a[:, 2], a[:, 1], -a[:, 0]
    skew = skew - skew.transpose(1, 2)
    c2w = torch.zeros(m, 3, 4, dtype=torch.float64)
    c2w[:, :, :3] = torch.linalg.matrix_exp(skew)
    c2w[:, :, 3] = torch.randn(m, 3, generator=g, dtype=torch.float64) * 0.1
    K = torch.tensor([[5.0, 0, w / 2], [0, 5.0, h / 2], [0, 0, 1]], dtype=torch.float64).repeat(m, 1, 1)
    K[:, 0, 0] += torch.rand(m, generator=g, dtype=torch.float64)
    pts = torch.randn(r, n, 3, generator=g, dtype=torch.float64) * torch.tensor([0.6, 0.6, 0.3])
    pts[..., 2] -= 2.5
    pts[0, 0, 2] = 5.0  # behind every camera
    pts[0, 1, 0] = 9.0  # outside every image
    ids = torch.randint(0, m, (r, v), generator=g)
    img = torch.rand(m, h, w, ch, generator=g, dtype=torch.float64)
    return pts.to(dtype), ids, c2w.to(dtype), K.to(dtype), img.to(dtype)


def _brute(pts, ids, c2w, K, img):
    """Per-point loop in float64."""
    m, h, w, ch = img.shape
    r, n, _ = pts.shape
    v = ids.shape[1]
    out = torch.zeros(r, n, v, ch, dtype=torch.float64)
    ok = torch.zeros(r, n, v, dtype=torch.bool)
    for i in range(r):
        for j in range(n):
            for s in range(v):
                cam = int(ids[i, s])
                rot, t = c2w[cam, :, :3].double(), c2w[cam, :, 3].double()
                c = rot.T @ (pts[i, j].double() - t)
                if c[2] >= 0:
                    continue
                k = K[cam].double()
                u = float(k[0, 0] * c[0] / -c[2] + k[0, 2])
                y = float(k[1, 1] * -c[1] / -c[2] + k[1, 2])
                if not (0 <= u <= w and 0 <= y <= h):
                    continue
                ok[i, j, s] = True
                su, sv = min(max(u - 0.5, 0.0), w - 1), min(max(y - 0.5, 0.0), h - 1)
                x0, y0 = int(su), int(sv)
                x1, y1 = min(x0 + 1, w - 1), min(y0 + 1, h - 1)
                fu, fv = su - x0, sv - y0
                im = img[cam].double()
                out[i, j, s] = (
                    im[y0, x0] * (1 - fu) * (1 - fv)
                    + im[y0, x1] * fu * (1 - fv)
                    + im[y1, x0] * (1 - fu) * fv
                    + im[y1, x1] * fu * fv
                )
    return out, ok


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_twin_and_brute_force(dtype):
    pts, ids, c2w, K, img = _scene(dtype)
    s, ok = rs.project_to_views(pts, ids, c2w, K, img)
    assert s.shape == (5, 4, 3, 3) and ok.shape == (5, 4, 3) and ok.dtype == torch.bool
    assert s.dtype == dtype
    s_ref, ok_ref = ref.project_to_views(pts, ids, c2w, K, img)
    s_bf, ok_bf = _brute(pts, ids, c2w, K, img)
    tol = {"atol": 1e-5, "rtol": 1e-5} if dtype == torch.float32 else {"atol": 1e-12, "rtol": 1e-12}
    assert torch.equal(ok, ok_ref) and torch.equal(ok, ok_bf)
    assert_close(s, s_ref, **tol)
    assert_close(s.double(), s_bf, **tol)
    assert not ok[0, 0].any() and not ok[0, 1].any()  # behind / outside
    assert ok.sum() > ok.numel() // 2
    assert (s[~ok] == 0).all()


def test_gradients_match_twin():
    pts, ids, c2w, K, img = _scene(torch.float32)
    pts.requires_grad_(True)
    img.requires_grad_(True)
    up = torch.randn(5, 4, 3, 3, generator=torch.Generator().manual_seed(1))
    s, _ = rs.project_to_views(pts, ids, c2w, K, img)
    g = torch.autograd.grad((s * up).sum(), (pts, img))
    s_ref, _ = ref.project_to_views(pts, ids, c2w, K, img)
    g_ref = torch.autograd.grad((s_ref * up).sum(), (pts, img))
    for a, b in zip(g, g_ref, strict=True):
        assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_gradcheck_float64():
    pts, ids, c2w, K, img = _scene(torch.float64, r=3, n=3, v=2, m=3, h=4, w=5, ch=2)
    pts.requires_grad_(True)
    img.requires_grad_(True)
    assert gradcheck(lambda p, i: rs.project_to_views(p, ids, c2w, K, i)[0], (pts, img), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("depth", [0.5, 1.7, 40.0])
def test_own_camera_round_trip(depth):
    """A point on pixel (x, y)'s ray of camera m at any depth projects back to that pixel's
    centre and samples exactly that pixel's colour (4x4 cameras, c2w given as [M, 4, 4])."""
    _, _, c2w, K, _ = _scene(torch.float64, m=3, h=5, w=6)
    c2w4 = torch.eye(4, dtype=torch.float64).repeat(3, 1, 1)
    c2w4[:, :3] = c2w
    img = torch.rand(3, 5, 6, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    o, d = rs.generate_rays(c2w4.float(), K.float(), width=6, height=5, normalize=False)
    pts = (o.double() + depth * d.double()).reshape(3, 30, 3)  # [cam, pixel, 3]
    ids = torch.arange(3)[:, None]
    s, ok = rs.project_to_views(pts, ids, c2w4, K, img)
    assert ok.all()
    assert_close(s[:, :, 0], img.reshape(3, 30, 3), atol=1e-5, rtol=0)


def test_ndc_depth_conversion_doc():
    """The documented NDC -> metric map ``z = near / (1 - t)``: t=0 -> near, t -> 1 -> inf."""
    near = 1.0
    t = torch.tensor([0.0, 0.5, 0.999])
    z = near / (1 - t)
    assert_close(z, torch.tensor([1.0, 2.0, 1000.0]), rtol=1e-4, atol=0)
    assert "z = near / (1 - t)" in " ".join(projection.__doc__.split())


def test_non_finite_points_are_invalid():
    pts, ids, c2w, K, img = _scene()
    pts[1, 0, 0] = float("nan")
    pts[1, 1, 2] = float("-inf")
    s, ok = rs.project_to_views(pts, ids, c2w, K, img)
    assert not ok[1, :2].any() and (s[1, :2] == 0).all()


def test_bad_input():
    pts, ids, c2w, K, img = _scene()
    with pytest.raises(ValueError, match="points"):
        rs.project_to_views(pts[..., :2], ids, c2w, K, img)
    with pytest.raises(TypeError, match="view_ids"):
        rs.project_to_views(pts, ids.float(), c2w, K, img)
    with pytest.raises(ValueError, match="view_ids"):
        rs.project_to_views(pts, ids + 10, c2w, K, img)
    with pytest.raises(ValueError, match="view_ids"):
        rs.project_to_views(pts, ids[:2], c2w, K, img)
    with pytest.raises(ValueError, match="c2w"):
        rs.project_to_views(pts, ids, c2w[:, :2], K, img)
    with pytest.raises(ValueError, match="images"):
        rs.project_to_views(pts, ids, c2w, K, img[:2])
    with pytest.raises(ValueError, match="K"):
        rs.project_to_views(pts, ids, c2w, K * 0, img)
    with pytest.raises(TypeError, match="points"):
        rs.project_to_views(pts.long(), ids, c2w, K, img)


def test_nearest_views():
    c2w = torch.eye(4).repeat(5, 1, 1)
    c2w[:, 0, 3] = torch.tensor([0.0, 1.0, 3.0, 6.0, 10.0])
    ids = projection.nearest_views(c2w[:2], c2w, 3)
    assert ids.tolist() == [[0, 1, 2], [1, 0, 2]]
    ids = projection.nearest_views(c2w[:2], c2w, 2, exclude_self=True)
    assert ids.tolist() == [[1, 2], [0, 2]]
    g = torch.Generator().manual_seed(0)
    ids = projection.nearest_views(c2w, c2w[:, :3], 3, exclude_self=True, random=True, generator=g)
    assert ids.shape == (5, 3) and ids.dtype == torch.int64
    for qi, row in enumerate(ids.tolist()):
        assert qi not in row and len(set(row)) == 3
        d = (c2w[row, 0, 3] - c2w[qi, 0, 3]).abs()
        assert bool((d[1:] >= d[:-1]).all())  # distance order
    with pytest.raises(ValueError, match="n_views"):
        projection.nearest_views(c2w, c2w, 5, exclude_self=True)
