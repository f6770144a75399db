"""Mesh rasterization (Rust kernel vs torch twin vs brute-force rays) and texture sampling."""

from __future__ import annotations

import math

import pytest
import raysplat
import torch
from raysplat.mesh import MeshRaster, rasterize_mesh, sample_texture
from raysplat.reference import mesh as ref

W, H = 48, 36
K = torch.tensor([[40.0, 0.0, 24.0], [0.0, 42.0, 17.0], [0.0, 0.0, 1.0]])
UNIT_K = torch.eye(3)  # with opencv camera at the origin: pixel = (x / z, y / z)
EYE = torch.eye(4)


def random_mesh(seed: int, nf: int = 200, nv: int = 120, spread: float = 1.0, dist: float = 4.0):
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(nv, 3, generator=g) * spread
    v[:, 2] -= dist  # in front of an OpenGL camera at the origin
    f = torch.randint(0, nv, (nf, 3), generator=g)
    attr = torch.randn(nv, 4, generator=g)
    return v, f, attr


def look_at(eye, target, up=(0.0, 1.0, 0.0)) -> torch.Tensor:
    """OpenGL camera-to-world (looking down -z)."""
    eye, target, up = (torch.tensor(x, dtype=torch.float64) for x in (eye, target, up))
    back = eye - target
    back = back / back.norm()
    right = torch.linalg.cross(up, back)
    right = right / right.norm()
    up2 = torch.linalg.cross(back, right)
    m = torch.eye(4, dtype=torch.float64)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, up2, back, eye
    return m.float()


GL_TO_CV = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0]))


def assert_same(a: MeshRaster, b: MeshRaster) -> None:
    assert torch.equal(a.triangle_id, b.triangle_id)
    torch.testing.assert_close(a.barycentrics, b.barycentrics, atol=1e-6, rtol=0)
    torch.testing.assert_close(a.depth, b.depth, atol=1e-6, rtol=1e-6)


def twin(v, f, view, k, w, h, convention="opengl") -> MeshRaster:
    tid, bary, depth = ref.rasterize_mesh(v, f, view, k, w, h, convention)
    return MeshRaster(tid, bary, depth, None)


# --------------------------------------------------------------------------- Rust vs twin


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("convention", ["opengl", "opencv"])
def test_rust_matches_torch_twin(seed: int, convention: str) -> None:
    # seeds 3..5 put vertices behind and around the camera: exercises near / guard clipping
    spread, dist = (1.0, 4.0) if seed < 3 else (4.0, 1.0)
    v, f, attr = random_mesh(seed, spread=spread, dist=dist)
    c2w = look_at((0.3, -0.2, 0.5), (0.0, 0.0, -4.0))
    if convention == "opencv":
        c2w = c2w @ GL_TO_CV
    out = rasterize_mesh(v, f, K=K, width=W, height=H, c2w=c2w, attributes=attr, convention=convention)
    view = torch.linalg.inv(c2w.double()).float()
    ref_out = twin(v, f, view, K, W, H, convention)
    assert out.triangle_id.dtype == torch.int64 and out.triangle_id.shape == (H, W)
    assert out.barycentrics.dtype == torch.float32 and out.barycentrics.shape == (H, W, 3)
    assert out.depth.dtype == torch.float32 and out.depth.shape == (H, W)
    assert (out.triangle_id >= 0).any()
    assert_same(out, ref_out)
    exp = raysplat.mesh.interpolate(attr, f, ref_out.triangle_id, ref_out.barycentrics)
    torch.testing.assert_close(out.attributes, exp)
    empty = out.triangle_id < 0
    assert torch.isinf(out.depth[empty]).all() and (out.barycentrics[empty] == 0).all()
    assert (out.attributes[empty] == 0).all()
    hit = ~empty
    torch.testing.assert_close(out.barycentrics[hit].sum(-1), torch.ones(int(hit.sum())))
    assert (out.depth[hit] >= raysplat.mesh.Z_NEAR * 0.999).all()


def test_deterministic_across_thread_counts() -> None:
    v, f, _ = random_mesh(11, nf=2000, nv=500, spread=1.5)
    before = raysplat.get_num_threads()
    try:
        raysplat.set_num_threads(1)
        a = rasterize_mesh(v, f, viewmat=EYE, K=K, width=W, height=H)
        raysplat.set_num_threads(3)
        b = rasterize_mesh(v, f, viewmat=EYE, K=K, width=W, height=H)
    finally:
        raysplat.set_num_threads(before)
    assert_same(a, b)
    assert torch.equal(a.barycentrics, b.barycentrics)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_uses_the_twin_and_matches_cpu() -> None:
    v, f, attr = random_mesh(5, spread=2.0, dist=2.0)
    a = rasterize_mesh(v, f, viewmat=EYE, K=K, width=W, height=H, attributes=attr)
    b = rasterize_mesh(
        v.cuda(),
        f.cuda(),
        viewmat=EYE.cuda(),
        K=K.cuda(),
        width=W,
        height=H,
        attributes=attr.cuda(),
    )
    assert b.triangle_id.device.type == "cuda"
    assert torch.equal(a.triangle_id, b.triangle_id.cpu())
    torch.testing.assert_close(a.barycentrics, b.barycentrics.cpu(), atol=1e-6, rtol=0)
    torch.testing.assert_close(a.attributes, b.attributes.cpu(), atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------- brute-force rays


def moller_trumbore(orig: torch.Tensor, dirs: torch.Tensor, tri: torch.Tensor):
    """Nearest hit of each ray with every triangle: (face, t, u, v); face -1 for misses."""
    v0, v1, v2 = tri[:, 0], tri[:, 1], tri[:, 2]
    e1, e2 = v1 - v0, v2 - v0
    d = dirs[:, None]  # [R, 1, 3]
    p = torch.linalg.cross(d.expand(-1, tri.shape[0], -1), e2[None].expand(d.shape[0], -1, -1))
    det = (e1[None] * p).sum(-1)
    inv = 1.0 / det
    s = orig - v0[None]
    u = (s * p).sum(-1) * inv
    q = torch.linalg.cross(s, e1[None].expand_as(s))
    vv = (d * q).sum(-1) * inv
    t = (e2[None] * q).sum(-1) * inv
    ok = (det.abs() > 1e-12) & (u >= 0) & (vv >= 0) & (u + vv <= 1) & (t > 0)
    t = torch.where(ok, t, torch.full_like(t, math.inf))
    best = t.argmin(1)
    tb = t.gather(1, best[:, None])[:, 0]
    face = torch.where(torch.isfinite(tb), best, torch.full_like(best, -1))
    ub = u.gather(1, best[:, None])[:, 0]
    vb = vv.gather(1, best[:, None])[:, 0]
    return face, tb, ub, vb


@pytest.mark.parametrize("seed", range(3))
def test_matches_brute_force_ray_casting(seed: int) -> None:
    v, f, _ = random_mesh(100 + seed, nf=60, nv=50, spread=1.2)
    out = rasterize_mesh(v, f, viewmat=EYE, K=K, width=W, height=H)
    # rays through pixel centres, OpenGL camera at the origin
    ys, xs = torch.meshgrid(
        torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij"
    )
    k = K.double()
    dx = (xs + 0.5 - k[0, 2]) / k[0, 0]
    dy = (ys + 0.5 - k[1, 2]) / k[1, 1]
    dirs = torch.stack([dx, -dy, -torch.ones_like(dx)], -1).reshape(-1, 3)
    orig = torch.zeros_like(dirs)
    face, t, u, vv = moller_trumbore(orig[:, None].expand(-1, f.shape[0], -1), dirs, v.double()[f])
    tid = out.triangle_id.reshape(-1)
    agree = tid == face
    # the two may only disagree where a ray grazes an edge (1/256-pixel snapping): rare
    assert agree.float().mean() > 0.98
    hit = agree & (face >= 0)
    assert hit.sum() > 50
    # snapping vertices to 1/256 pixel moves grazing (nearly edge-on) triangles' depth a little
    depth = t[hit]  # the ray direction has view-axis component 1
    rel = (out.depth.reshape(-1)[hit].double() - depth).abs() / depth
    assert rel.max() < 2e-2 and (rel < 1e-3).float().mean() > 0.99
    bary = torch.stack([1 - u - vv, u, vv], -1)[hit]
    err = (out.barycentrics.reshape(-1, 3)[hit].double() - bary).abs().amax(-1)
    assert err.max() < 5e-2 and (err < 5e-3).float().mean() > 0.99


# --------------------------------------------------------------------------- watertightness


def grid_plane(n: int, seed: int, span: float = 1.0):
    """A jittered n x n grid of triangle pairs (random diagonals) on the plane z = -2."""
    g = torch.Generator().manual_seed(seed)
    lin = torch.linspace(-span, span, n + 1)
    yy, xx = torch.meshgrid(lin, lin, indexing="ij")
    jit = (torch.rand(n + 1, n + 1, 2, generator=g) - 0.5) * (1.2 * span / n)
    jit[0], jit[-1], jit[:, 0], jit[:, -1] = 0, 0, 0, 0
    xy = torch.stack([xx, yy], -1) + jit
    v = torch.cat([xy.reshape(-1, 2), torch.full(((n + 1) ** 2, 1), -2.0)], 1)
    faces = []
    flip = torch.rand(n, n, generator=g) < 0.5
    for j in range(n):
        for i in range(n):
            a = j * (n + 1) + i
            b, c, d = a + 1, a + n + 1, a + n + 2
            faces += [[a, b, d], [a, d, c]] if flip[j, i] else [[a, b, c], [b, d, c]]
    return v, torch.tensor(faces)


@pytest.mark.parametrize("seed", range(3))
def test_full_screen_plane_covers_every_pixel_exactly_once(seed: int) -> None:
    v, f = grid_plane(6, seed, span=2.0)
    c2w = look_at((0.1 * seed, 0.05, 0.0), (0.0, 0.0, -2.0))  # slightly oblique view
    out = rasterize_mesh(v, f, K=K, width=W, height=H, c2w=c2w)
    assert (out.triangle_id >= 0).all()
    count = torch.zeros(H, W, dtype=torch.int64)
    for i in range(f.shape[0]):
        one = rasterize_mesh(v, f[i : i + 1], K=K, width=W, height=H, c2w=c2w)
        count += (one.triangle_id >= 0).long()
        # the full render shows triangle i exactly where it alone covers the pixel
        assert torch.equal(out.triangle_id == i, one.triangle_id == 0)
    assert (count == 1).all()


def test_dense_tessellation_has_no_holes() -> None:
    v, f = grid_plane(40, 3, span=2.0)  # triangles smaller than a pixel
    out = rasterize_mesh(v, f, K=K, width=W, height=H, viewmat=EYE)
    assert (out.triangle_id >= 0).all()
    assert (out.triangle_id >= 0).all() and ref.rasterize_mesh(v, f, EYE, K, W, H)[0].ge(0).all()


def test_shared_edge_never_cracks_nor_double_covers() -> None:
    g = torch.Generator().manual_seed(0)
    w = h = 24
    cracks = doubles = 0
    for trial in range(200):
        # a convex quad in pixel units (opencv camera, unit K, z = 1), diagonal in any direction
        centre = torch.rand(2, generator=g) * 8 + 8
        ang = torch.sort(torch.rand(4, generator=g) * 2 * math.pi).values
        rad = torch.rand(2, generator=g) * 6 + 3  # points on an ellipse: a convex quad
        rot = float(torch.rand(1, generator=g)) * math.pi
        rm = torch.tensor([[math.cos(rot), -math.sin(rot)], [math.sin(rot), math.cos(rot)]])
        pts = centre + torch.stack([rad[0] * ang.cos(), rad[1] * ang.sin()], -1) @ rm.T
        if trial % 2:  # vertices on pixel centres / half pixels: edges through pixel centres
            pts = torch.round(pts * 2) / 2
        v = torch.cat([pts, torch.ones(4, 1)], 1)
        f = torch.tensor([[0, 1, 2], [0, 2, 3]] if trial % 4 < 2 else [[1, 2, 3], [1, 3, 0]])
        a = rasterize_mesh(v, f[:1], K=UNIT_K, width=w, height=h, viewmat=EYE, convention="opencv")
        b = rasterize_mesh(v, f[1:], K=UNIT_K, width=w, height=h, viewmat=EYE, convention="opencv")
        cnt = (a.triangle_id >= 0).long() + (b.triangle_id >= 0).long()
        doubles += int((cnt > 1).sum())
        # pixel centres strictly inside the quad (away from its outer edges) must be covered
        ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
        pc = torch.stack([xs, ys], -1)
        inside = torch.ones(h, w, dtype=torch.bool)
        ccw = ((pts[1] - pts[0])[0] * (pts[2] - pts[0])[1] - (pts[1] - pts[0])[1] * (pts[2] - pts[0])[0]) > 0
        for i in range(4):
            p0, p1 = pts[i], pts[(i + 1) % 4]
            e = (p1 - p0)[0] * (pc[..., 1] - p0[1]) - (p1 - p0)[1] * (pc[..., 0] - p0[0])
            dist = e / (p1 - p0).norm()
            inside &= (dist if ccw else -dist) > 1e-2
        cracks += int((inside & (cnt == 0)).sum())
        full = rasterize_mesh(v, f, K=UNIT_K, width=w, height=h, viewmat=EYE, convention="opencv")
        assert torch.equal(full.triangle_id >= 0, cnt > 0)
    assert cracks == 0 and doubles == 0


# --------------------------------------------------------------------------- visibility


@pytest.mark.usefixtures("op_backend")  # Rust and the public torch branch
def test_occlusion_order_and_ties() -> None:
    quad = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
    near = torch.cat([quad * 0.5, torch.full((4, 1), -2.0)], 1)
    far = torch.cat([quad * 2.0, torch.full((4, 1), -5.0)], 1)  # a ring of it shows around near
    v = torch.cat([far, near])
    f = torch.tensor([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]])
    # where each pixel centre's ray meets the planes z = -2 and z = -5 (x, y in camera units)
    ys, xs = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    ray_x, ray_y = (xs - K[0, 2]) / K[0, 0], (ys - K[1, 2]) / K[1, 1]
    in_near = torch.maximum(ray_x.abs(), ray_y.abs()) * 2.0
    in_far = torch.maximum(ray_x.abs(), ray_y.abs()) * 5.0
    near_px = in_near < 0.5 - 0.02
    far_px = (in_near > 0.5 + 0.02) & (in_far < 2.0 - 0.05)
    empty_px = in_far > 2.0 + 0.05
    assert near_px.sum() > 100 and far_px.sum() > 100 and empty_px.sum() > 20
    for perm in (torch.arange(4), torch.arange(4).flip(0)):
        out = rasterize_mesh(v, f[perm], viewmat=EYE, K=K, width=W, height=H)
        face = torch.where(out.triangle_id >= 0, perm[out.triangle_id.clamp(min=0)], -1)
        assert torch.isin(face[near_px], torch.tensor([2, 3])).all()
        torch.testing.assert_close(out.depth[near_px], torch.full_like(out.depth[near_px], 2.0))
        assert torch.isin(face[far_px], torch.tensor([0, 1])).all()  # the far quad, unoccluded
        torch.testing.assert_close(out.depth[far_px], torch.full_like(out.depth[far_px], 5.0))
        assert (face[empty_px] == -1).all()
        assert face[H // 2, W // 2] in (2, 3) and out.depth[H // 2, W // 2] == pytest.approx(2.0)
    # the same face twice: the lower index wins every pixel
    dup = torch.tensor([[4, 5, 6], [6, 5, 4]])
    out = rasterize_mesh(v, dup, viewmat=EYE, K=K, width=W, height=H)
    assert (out.triangle_id <= 0).all() and (out.triangle_id == 0).any()


def test_near_plane_clips_crossing_triangles() -> None:
    # a floor triangle from behind the camera to far in front: its front part is drawn
    v = torch.tensor([[-3.0, -1.0, 2.0], [3.0, -1.0, 2.0], [0.0, -1.0, -30.0]])
    f = torch.tensor([[0, 1, 2]])
    out = rasterize_mesh(v, f, viewmat=EYE, K=K, width=W, height=H)
    hit = out.triangle_id == 0
    assert hit.sum() > 100 and not hit[: H // 2].any()  # floor is below the horizon
    # depth agrees with the barycentric interpolation of camera-space z
    z = (out.barycentrics[hit] * (-v[:, 2])).sum(-1)
    torch.testing.assert_close(z, out.depth[hit], atol=1e-3, rtol=1e-4)
    t = twin(v, f, EYE, K, W, H)
    assert torch.equal(out.triangle_id, t.triangle_id)
    behind = v.clone()
    behind[:, 2] = 1.0
    assert (rasterize_mesh(behind, f, viewmat=EYE, K=K, width=W, height=H).triangle_id == -1).all()


def test_perspective_correct_interpolation() -> None:
    # a slanted quad; UV at a pixel must equal the analytic ray-plane intersection's UV
    p0 = torch.tensor([-1.5, -1.0, -2.0])
    eu = torch.tensor([3.0, 0.0, -4.0])  # receding to the right
    ev = torch.tensor([0.0, 2.0, -1.0])
    corners = torch.stack([p0, p0 + eu, p0 + eu + ev, p0 + ev])
    uv = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    f = torch.tensor([[0, 1, 2], [0, 2, 3]])
    out = rasterize_mesh(corners, f, viewmat=EYE, K=K, width=W, height=H, attributes=uv)
    hit = out.triangle_id >= 0
    assert hit.sum() > 200
    ys, xs = torch.nonzero(hit, as_tuple=True)
    k = K.double()
    d = torch.stack(
        [(xs + 0.5 - k[0, 2]) / k[0, 0], -(ys + 0.5 - k[1, 2]) / k[1, 1], -torch.ones(len(xs))], -1
    )
    # solve a * eu + b * ev - t * d = -p0
    m = torch.stack([eu.double().expand_as(d), ev.double().expand_as(d), -d], -1)
    sol = torch.linalg.solve(m, (-p0.double()).expand_as(d))
    torch.testing.assert_close(out.attributes[hit].double(), sol[:, :2], atol=2e-4, rtol=0)
    torch.testing.assert_close(out.depth[hit].double(), sol[:, 2], atol=1e-4, rtol=2e-4)
    # affine (screen-space) interpolation would be visibly off on this quad
    assert (out.attributes[hit][:, 0].double() - sol[:, 0]).abs().max() < 1e-3


def test_attributes_are_differentiable() -> None:
    v, f, attr = random_mesh(4)
    attr.requires_grad_(True)
    out = rasterize_mesh(v, f, viewmat=EYE, K=K, width=W, height=H, attributes=attr)
    out.attributes.sum().backward()
    counts = torch.zeros(attr.shape[0])
    hit = out.triangle_id >= 0
    counts.index_add_(0, f[out.triangle_id[hit]].reshape(-1), out.barycentrics[hit].reshape(-1))
    torch.testing.assert_close(attr.grad, counts[:, None].expand_as(attr))


def test_conventions_and_camera_forms_agree() -> None:
    v, f, attr = random_mesh(7, spread=1.5, dist=3.0)
    c2w_gl = look_at((1.0, 0.5, 1.0), (0.0, 0.0, -3.0))
    a = rasterize_mesh(v, f, K=K, width=W, height=H, c2w=c2w_gl)
    b = rasterize_mesh(v, f, K=K, width=W, height=H, c2w=c2w_gl @ GL_TO_CV, convention="opencv")
    c = rasterize_mesh(v, f, K=K, width=W, height=H, c2w=c2w_gl[:3])
    d = rasterize_mesh(v, f, K=K, width=W, height=H, viewmat=torch.linalg.inv(c2w_gl.double()).float())
    assert (a.triangle_id >= 0).sum() > 100
    for o in (b, c, d):
        assert torch.equal(a.triangle_id, o.triangle_id)
        torch.testing.assert_close(a.barycentrics, o.barycentrics, atol=1e-5, rtol=0)
        torch.testing.assert_close(a.depth, o.depth)


def test_opencv_looks_down_plus_z_with_y_down() -> None:
    # a small triangle above the optical axis (world y up) shows in the top half in OpenGL;
    # the same numbers read as OpenCV camera space (y down, +z forward) show in the bottom half
    v = torch.tensor([[-0.2, 0.5, -3.0], [0.2, 0.5, -3.0], [0.0, 0.9, -3.0]])
    f = torch.tensor([[0, 1, 2]])
    gl = rasterize_mesh(v, f, viewmat=EYE, K=K, width=W, height=H)
    rows = torch.nonzero(gl.triangle_id == 0)[:, 0]
    assert len(rows) > 0 and (rows < K[1, 2]).all()
    cv = rasterize_mesh(
        v * torch.tensor([1.0, 1.0, -1.0]),
        f,
        viewmat=EYE,
        K=K,
        width=W,
        height=H,
        convention="opencv",
    )
    rows = torch.nonzero(cv.triangle_id == 0)[:, 0]
    assert len(rows) > 0 and (rows > K[1, 2]).all()


# --------------------------------------------------------------------------- bad inputs


def test_empty_mesh_is_all_empty() -> None:
    v = torch.zeros(0, 3)
    f = torch.zeros(0, 3, dtype=torch.int64)
    out = rasterize_mesh(v, f, viewmat=EYE, K=K, width=5, height=4, attributes=torch.zeros(0, 2))
    assert (out.triangle_id == -1).all() and torch.isinf(out.depth).all()
    assert out.attributes.shape == (4, 5, 2) and (out.attributes == 0).all()
    t = twin(v, f, EYE, K, 5, 4)
    assert (t.triangle_id == -1).all()


def test_int32_faces_and_double_vertices_are_accepted() -> None:
    v, f, _ = random_mesh(8)
    a = rasterize_mesh(v, f, viewmat=EYE, K=K, width=W, height=H)
    b = rasterize_mesh(v.double(), f.int(), viewmat=EYE.double(), K=K.double(), width=W, height=H)
    assert_same(a, b)


@pytest.mark.usefixtures("op_backend")  # Rust and the public torch branch
def test_bad_inputs() -> None:
    v, f, attr = random_mesh(9, nf=10, nv=8)
    ok = dict(viewmat=EYE, K=K, width=W, height=H)
    with pytest.raises(ValueError, match="faces"):
        rasterize_mesh(v, torch.tensor([[0, 1, 8]]), **ok)
    with pytest.raises(ValueError, match="faces"):
        rasterize_mesh(v, torch.tensor([[0, -1, 2]]), **ok)
    with pytest.raises(ValueError, match="faces"):
        rasterize_mesh(v, f[:, :2], **ok)
    with pytest.raises(TypeError, match="faces"):
        rasterize_mesh(v, f.float(), **ok)
    with pytest.raises(ValueError, match="vertices"):
        rasterize_mesh(v[:, :2], f, **ok)
    with pytest.raises(TypeError, match="vertices"):
        rasterize_mesh(v.long(), f, **ok)
    with pytest.raises(TypeError, match="vertices"):
        rasterize_mesh(v.numpy(), f, **ok)
    nan = v.clone()
    nan[3, 1] = float("nan")
    with pytest.raises(ValueError, match="vertices"):
        rasterize_mesh(nan, f, **ok)
    with pytest.raises(ValueError, match="exactly one"):
        rasterize_mesh(v, f, K=K, width=W, height=H)
    with pytest.raises(ValueError, match="exactly one"):
        rasterize_mesh(v, f, c2w=EYE, **ok)
    with pytest.raises(ValueError, match="viewmat"):
        rasterize_mesh(v, f, viewmat=EYE[:3], K=K, width=W, height=H)
    with pytest.raises(ValueError, match="c2w"):
        rasterize_mesh(v, f, c2w=EYE[:2], K=K, width=W, height=H)
    with pytest.raises(ValueError, match="c2w"):
        rasterize_mesh(v, f, c2w=torch.zeros(4, 4), K=K, width=W, height=H)
    with pytest.raises(TypeError, match="K"):
        rasterize_mesh(v, f, viewmat=EYE, width=W, height=H)
    with pytest.raises(ValueError, match="K"):
        rasterize_mesh(v, f, viewmat=EYE, K=K[:2], width=W, height=H)
    with pytest.raises(ValueError, match="K"):
        rasterize_mesh(v, f, viewmat=EYE, K=torch.zeros(3, 3), width=W, height=H)
    with pytest.raises(TypeError, match="width"):
        rasterize_mesh(v, f, viewmat=EYE, K=K, height=H)
    with pytest.raises(ValueError, match="height"):
        rasterize_mesh(v, f, viewmat=EYE, K=K, width=W, height=0)
    with pytest.raises(ValueError, match="width"):
        rasterize_mesh(v, f, viewmat=EYE, K=K, width=1 << 17, height=H)
    with pytest.raises(ValueError, match="convention"):
        rasterize_mesh(v, f, convention="directx", **ok)
    with pytest.raises(ValueError, match="attributes"):
        rasterize_mesh(v, f, attributes=attr[:3], **ok)
    with pytest.raises(TypeError, match="attributes"):
        rasterize_mesh(v, f, attributes=attr.long(), **ok)
    inf = EYE.clone()
    inf[0, 3] = float("inf")
    with pytest.raises(ValueError, match="viewmat"):
        rasterize_mesh(v, f, viewmat=inf, K=K, width=W, height=H)


def test_core_errors_name_the_argument() -> None:
    from raysplat import _core

    v = torch.zeros(3, 3).numpy()
    view, k = EYE.numpy(), K.numpy()
    with pytest.raises(ValueError, match="faces"):
        _core.rasterize_mesh(v, torch.tensor([0, 1, 5]).numpy(), view, k, 4, 4, "opengl")
    with pytest.raises(ValueError, match="convention"):
        _core.rasterize_mesh(v, torch.tensor([0, 1, 2]).numpy(), view, k, 4, 4, "dx")


# --------------------------------------------------------------------------- textures


def test_sample_texture_bilinear_is_exact() -> None:
    h, w = 4, 5
    rows, cols = torch.meshgrid(
        torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij"
    )
    tex = torch.stack([rows, cols, 10 * rows + cols], -1)  # [H, W, 3]
    # texel centres: v = 0 is the bottom row
    u = (torch.arange(w, dtype=torch.float64) + 0.5) / w
    vv = 1 - (torch.arange(h, dtype=torch.float64) + 0.5) / h
    uv = torch.stack(torch.meshgrid(u, vv, indexing="xy"), -1)  # [H, W, 2]
    torch.testing.assert_close(sample_texture(tex, uv), tex)
    torch.testing.assert_close(sample_texture(tex, uv, mode="nearest"), tex)
    # in between texel centres the linear ramps are reproduced exactly
    g = torch.Generator().manual_seed(0)
    x = torch.rand(100, generator=g, dtype=torch.float64) * (w - 1)
    y = torch.rand(100, generator=g, dtype=torch.float64) * (h - 1)
    q = torch.stack([(x + 0.5) / w, 1 - (y + 0.5) / h], -1)
    torch.testing.assert_close(sample_texture(tex, q), torch.stack([y, x, 10 * y + x], -1))
    # a hand-computed value: halfway between the bottom-left 2x2 texels
    pt = torch.tensor([[1.0 / w, 1.0 / h]], dtype=torch.float64)
    torch.testing.assert_close(
        sample_texture(tex, pt)[0],
        torch.tensor([h - 1.5, 0.5, 10 * (h - 1.5) + 0.5], dtype=torch.float64),
    )
    # clamp to edge
    edge = torch.tensor([[-3.0, 2.0], [5.0, -1.0]], dtype=torch.float64)
    torch.testing.assert_close(sample_texture(tex, edge), torch.stack([tex[0, 0], tex[h - 1, w - 1]]))
    # nearest picks floor((1 - v) * H), floor(u * W)
    pt = torch.tensor([[0.39, 0.3]], dtype=torch.float64)
    assert torch.equal(sample_texture(tex, pt, mode="nearest")[0], tex[int(0.7 * h), int(0.39 * w)])


def test_sample_texture_matches_grid_sample_and_shapes() -> None:
    g = torch.Generator().manual_seed(1)
    tex = torch.rand(7, 9, 3, generator=g)
    uv = torch.rand(2, 5, 11, 2, generator=g) * 1.4 - 0.2
    out = sample_texture(tex, uv)
    assert out.shape == (2, 5, 11, 3)
    grid = torch.stack([uv[..., 0] * 2 - 1, 1 - 2 * uv[..., 1]], -1).reshape(1, -1, 1, 2)
    exp = torch.nn.functional.grid_sample(
        tex.permute(2, 0, 1)[None],
        grid,
        mode="bilinear",
        padding_mode="border",
        align_corners=False,
    )
    torch.testing.assert_close(out, exp[0, :, :, 0].T.reshape(2, 5, 11, 3))


def test_sample_texture_gradcheck() -> None:
    g = torch.Generator().manual_seed(2)
    tex = torch.rand(5, 6, 2, generator=g, dtype=torch.float64, requires_grad=True)
    # keep uv away from texel-centre lines where bilinear is not differentiable
    cells = torch.randint(0, 4, (12, 2), generator=g).double()
    frac = torch.rand(12, 2, generator=g, dtype=torch.float64) * 0.8 + 0.1
    uv = ((cells + frac + 0.5) / torch.tensor([6.0, 5.0], dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t, q: sample_texture(t, q), (tex, uv))
    assert torch.autograd.gradcheck(lambda t: sample_texture(t, uv.detach(), mode="nearest"), (tex,))


@pytest.mark.usefixtures("op_backend")  # Rust and the public torch branch
def test_sample_texture_bad_inputs() -> None:
    tex = torch.rand(4, 4, 3)
    with pytest.raises(ValueError, match="texture"):
        sample_texture(tex[0], torch.rand(3, 2))
    with pytest.raises(ValueError, match="uv"):
        sample_texture(tex, torch.rand(3, 3))
    with pytest.raises(TypeError, match="uv"):
        sample_texture(tex, torch.ones(3, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="uv"):
        sample_texture(tex, torch.tensor([[float("nan"), 0.5]]))
    with pytest.raises(ValueError, match="mode"):
        sample_texture(tex, torch.rand(3, 2), mode="cubic")
    with pytest.raises(ValueError, match="texture"):
        sample_texture(torch.rand(0, 4, 3), torch.rand(3, 2))
