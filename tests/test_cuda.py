"""Every public op on the accelerator vs the CPU Rust result, forward and gradients, through each
dispatch path (``raysplat.backend("auto")`` and ``backend("torch")`` on CUDA).

Marked ``cuda`` (``pytest -m cuda``; ``scripts/gpu_check.sh`` runs them). Without CUDA they skip
with a reason, unless ``RAYSPLAT_TEST_DEVICE=cpu``: then the same tests run on CPU, comparing
``backend("torch")`` (the twins, the code CUDA tensors run) with ``backend("rust")``, which
proves the test code itself without a GPU.
"""

from __future__ import annotations

import os

import pytest
import raysplat as rs
import torch
from torch.testing import assert_close

DEVICE = os.environ.get("RAYSPLAT_TEST_DEVICE", "cuda")
PATHS = ["auto", "torch"] if DEVICE != "cpu" else ["torch"]

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        DEVICE != "cpu" and not torch.cuda.is_available(),
        reason="CUDA is not available (RAYSPLAT_TEST_DEVICE=cpu runs these against the torch twins)",
    ),
]


@pytest.fixture(params=PATHS)
def path(request):
    return request.param


def _flat(out):
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [v for v in out.values() if isinstance(v, torch.Tensor)]
    res = []
    for o in out:
        res.extend(_flat(o) if isinstance(o, (tuple, list, dict)) else [o])
    return [o for o in res if isinstance(o, torch.Tensor)]


def check(fn, inputs: dict, grads=(), path="auto", rtol=1e-4, atol=1e-5, n_out=None):
    """Runs ``fn(**inputs)`` on CPU under ``backend("rust")`` and on DEVICE under ``path``;
    compares the first ``n_out`` tensor outputs and the gradients of the ``grads`` inputs under
    a shared random cotangent. Returns both output lists."""
    cpu = {
        k: (v.detach().clone().requires_grad_(k in grads) if isinstance(v, torch.Tensor) else v)
        for k, v in inputs.items()
    }
    dev = {
        k: (v.detach().to(DEVICE).requires_grad_(k in grads) if isinstance(v, torch.Tensor) else v)
        for k, v in inputs.items()
    }
    with rs.backend("rust"):
        out_c = _flat(fn(**cpu))[:n_out]
    with rs.backend(path):
        out_d = _flat(fn(**dev))[:n_out]
    assert len(out_c) == len(out_d)
    for i, (a, b) in enumerate(zip(out_c, out_d, strict=True)):
        assert a.shape == b.shape, f"output {i}: {a.shape} vs {b.shape}"
        if a.dtype.is_floating_point:
            assert_close(b.detach().cpu().to(a.dtype), a.detach(), rtol=rtol, atol=atol, msg=f"output {i}")
        else:
            assert torch.equal(b.cpu().to(a.dtype), a), f"output {i}"
    if grads:
        g = torch.Generator().manual_seed(7)
        loss_c, loss_d = 0.0, 0.0
        for a, b in zip(out_c, out_d, strict=True):
            if a.requires_grad and b.requires_grad:
                w = torch.rand(a.shape, generator=g, dtype=a.dtype)
                loss_c = loss_c + (a * w).sum()
                loss_d = loss_d + (b * w.to(b.device, b.dtype)).sum()
        loss_c.backward()
        with rs.backend(path):
            loss_d.backward()
        for k in grads:
            assert cpu[k].grad is not None and dev[k].grad is not None, f"no gradient for {k}"
            assert_close(
                dev[k].grad.cpu().to(cpu[k].dtype), cpu[k].grad, rtol=rtol * 10, atol=atol * 10, msg=f"v_{k}"
            )
    return out_c, out_d


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _intervals(shape, seed=0):
    g = _gen(seed)
    t0 = torch.rand(shape, generator=g) * 2.0
    t1 = t0 + torch.rand(shape, generator=g) * 0.5 + 0.05
    sig = torch.rand(shape, generator=g) * 3.0
    rgb = torch.rand(*shape, 3, generator=g)
    return t0, t1, sig, rgb


COUNTS = torch.tensor([3, 0, 1, 5, 0, 2, 1, 4, 0, 7])
RAY_INDICES = torch.repeat_interleave(torch.arange(len(COUNTS)), COUNTS)


# ---- volume rendering ------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["dense", "packed"])
def test_volume_render(path, layout):
    if layout == "dense":
        t0, t1, sig, rgb = _intervals((6, 9))
        kw = {}
    else:
        t0, t1, sig, rgb = _intervals((len(RAY_INDICES),))
        t0, t1 = torch.sort(t0).values, None
        t1 = t0 + 0.1
        kw = {"ray_indices": RAY_INDICES, "n_rays": len(COUNTS)}
    bkgd = torch.tensor([0.2, 0.3, 0.4])

    def fn(t_starts, t_ends, sigmas, rgbs, render_bkgd, **kw):
        return rs.volume_render(
            t_starts, t_ends, sigmas, rgbs, render_bkgd=render_bkgd, expected_depth=True, **kw
        )

    check(
        fn,
        {"t_starts": t0, "t_ends": t1, "sigmas": sig, "rgbs": rgb, "render_bkgd": bkgd, **kw},
        grads=("sigmas", "rgbs"),
        path=path,
    )


@pytest.mark.parametrize("layout", ["dense", "packed"])
def test_render_weights_and_accumulate(path, layout):
    shape = (5, 8) if layout == "dense" else (len(RAY_INDICES),)
    kw = {} if layout == "dense" else {"ray_indices": RAY_INDICES, "n_rays": len(COUNTS)}
    t0, t1, sig, rgb = _intervals(shape, 1)
    alphas = torch.rand(shape, generator=_gen(2)) * 0.9

    check(
        lambda t_starts, t_ends, sigmas, **k: rs.render_weight_from_density(t_starts, t_ends, sigmas, **k),
        {"t_starts": t0, "t_ends": t1, "sigmas": sig, **kw},
        grads=("sigmas",),
        path=path,
    )
    check(
        lambda alphas, **k: rs.render_weight_from_alpha(alphas, **k),
        {"alphas": alphas, **kw},
        grads=("alphas",),
        path=path,
    )
    n_rays = {"n_rays": shape[0]} if layout == "dense" else {}
    check(
        lambda weights, values, **k: rs.accumulate_along_rays(weights, values, **k),
        {"weights": alphas, "values": rgb, **kw, **n_rays},
        grads=("weights", "values"),
        path=path,
    )


# ---- scans -----------------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["inclusive_sum", "exclusive_sum", "inclusive_prod", "exclusive_prod"])
@pytest.mark.parametrize("layout", ["dense", "packed_info", "ray_indices"])
def test_scans(path, op, layout):
    f = getattr(rs, op)
    if layout == "dense":
        x = torch.rand(4, 7, generator=_gen(3)) + 0.5
        kw = {}
    else:
        x = torch.rand(len(RAY_INDICES), generator=_gen(3)) + 0.5
        if layout == "packed_info":
            kw = {"packed_info": rs.pack_info(RAY_INDICES, len(COUNTS))}
        else:
            kw = {"ray_indices": RAY_INDICES, "n_rays": len(COUNTS)}
    check(lambda inputs, **k: f(inputs, **k), {"inputs": x, **kw}, grads=("inputs",), path=path)


def test_pack_info(path):
    check(
        lambda ray_indices: rs.pack_info(ray_indices, len(COUNTS) + 2),
        {"ray_indices": RAY_INDICES},
        path=path,
    )


# ---- sampling --------------------------------------------------------------------------------


@pytest.mark.parametrize("spacing", ["linear", "disparity"])
def test_stratified_samples(path, spacing):
    near = torch.rand(6, generator=_gen(4)) * 0.5 + 0.1
    far = near + 2.0
    check(
        lambda t_near, t_far: rs.stratified_samples(t_near, t_far, 9, spacing=spacing, stratified=False),
        {"t_near": near, "t_far": far},
        path=path,
    )


def _hist(r=6, b=10, seed=5):
    edges = torch.sort(torch.rand(r, b + 1, generator=_gen(seed)) * 4.0, dim=-1).values
    weights = torch.rand(r, b, generator=_gen(seed + 1))
    weights[0] = 0.0  # an all-zero ray
    return edges, weights


def test_importance_sampling_and_inverse_cdf(path):
    edges, weights = _hist()
    check(
        lambda t_edges, weights: rs.importance_sampling(t_edges, weights, 12, stratified=False),
        {"t_edges": edges, "weights": weights},
        path=path,
    )
    u = torch.rand(6, 12, generator=_gen(9))
    check(
        lambda t_edges, weights, u: rs.inverse_cdf(t_edges, weights, u),
        {"t_edges": edges, "weights": weights, "u": u},
        path=path,
    )


def test_interlevel_loss(path):
    ep, wp = _hist(seed=11)
    e, w = _hist(seed=13)
    check(
        lambda t_edges_prop, weights_prop, t_edges, weights: rs.interlevel_loss(
            t_edges_prop, weights_prop, t_edges, weights
        ),
        {"t_edges_prop": ep, "weights_prop": wp, "t_edges": e, "weights": w},
        grads=("weights_prop",),
        path=path,
    )


# ---- rays ------------------------------------------------------------------------------------


def test_rays(path):
    c2w = torch.eye(4)[:3]
    c2w[:, 3] = torch.tensor([0.1, -0.2, 2.0])
    K = torch.tensor([[30.0, 0, 8.0], [0, 30.0, 6.0], [0, 0, 1]])
    o, d = check(lambda c2w, K: rs.generate_rays(c2w, K, 16, 12), {"c2w": c2w, "K": K}, path=path)[0]
    o, d = o.reshape(-1, 3), d.reshape(-1, 3)
    check(
        lambda origins, directions: rs.ndc_rays(origins, directions, 30.0, 16, 12),
        {"origins": o, "directions": d},
        path=path,
    )
    aabb = torch.tensor([-0.5, -0.5, -0.5, 0.5, 0.5, 0.5])
    check(
        lambda origins, directions, aabb: rs.ray_aabb_intersect(origins, directions, aabb),
        {"origins": o, "directions": d, "aabb": aabb},
        path=path,
    )


# ---- occupancy grid --------------------------------------------------------------------------


def _grid_rays(n=200):
    g = _gen(0)
    origins = torch.randn(n, 3, generator=g) * 0.3 + torch.tensor([0.0, 0.0, -2.5])
    target = torch.rand(n, 3, generator=g) * 1.6 - 0.8
    return origins, torch.nn.functional.normalize(target - origins, dim=-1)


@pytest.mark.parametrize("levels,cone_angle", [(1, 0.0), (2, 0.05)])
def test_occupancy_grid_marching(path, levels, cone_angle):
    grid = rs.OccupancyGrid([-1, -1, -1, 1, 1, 1], 16, levels)
    grid.binaries.copy_(torch.rand(grid.binaries.shape, generator=_gen(1)) < 0.3)
    o, d = _grid_rays()

    def fn(origins, directions, binaries):
        gr = grid if binaries.device.type == "cpu" else grid.to(binaries.device)
        return gr.sampling(
            origins, directions, near=0.1, far=8.0, render_step_size=0.02, cone_angle=cone_angle
        )

    out_c, _ = check(fn, {"origins": o, "directions": d, "binaries": grid.binaries}, path=path)
    assert out_c[0].numel() > 100


def test_occupancy_grid_update_and_culling(path):
    def density(x):
        # constant per grid cell (res 16 over [-1, 1]), so the update's random jitter cannot matter
        centre = (torch.floor((x + 1) * 8).clamp(0, 15) + 0.5) / 8 - 1
        return (centre.norm(dim=-1) < 0.6).float() * 5.0

    def fn(origins, directions):
        grid = rs.OccupancyGrid([-1, -1, -1, 1, 1, 1], 16, 1).to(origins.device)
        grid.update(
            0, density, warmup_steps=10, generator=torch.Generator(device=origins.device).manual_seed(0)
        )
        ri, ts, te = grid.sampling(origins, directions, render_step_size=0.05, density_fn=density)
        return grid.binaries, ri, ts, te

    o, d = _grid_rays(100)
    check(fn, {"origins": o, "directions": d}, path=path)


# ---- rasterization ---------------------------------------------------------------------------


def _gaussians(n=40, c=2, width=40, height=28, sh=None, seed=0):
    g = _gen(seed)
    means = torch.rand(n, 3, generator=g) * 2 - 1
    quats = torch.randn(n, 4, generator=g)
    scales = torch.rand(n, 3, generator=g) * 0.15 + 0.03
    opacities = torch.rand(n, generator=g) * 0.7 + 0.2
    colors = (
        torch.rand(n, 3, generator=g) if sh is None else torch.randn(n, (sh + 1) ** 2, 3, generator=g) * 0.4
    )
    viewmats = torch.eye(4).repeat(c, 1, 1)
    viewmats[:, 2, 3] = 4.0
    viewmats[1:, 0, 3] = 0.4
    Ks = torch.tensor([[60.0, 0, width / 2], [0, 55.0, height / 2 - 1.5], [0, 0, 1]]).repeat(c, 1, 1)
    return {
        "means": means,
        "quats": quats,
        "scales": scales,
        "opacities": opacities,
        "colors": colors,
        "viewmats": viewmats,
        "Ks": Ks,
    }


@pytest.mark.parametrize("sh,mode,rmode", [(None, "RGB", "classic"), (2, "RGB+ED", "antialiased")])
def test_rasterization(path, sh, mode, rmode):
    def fn(**kw):
        img, alpha, _ = rs.rasterization(
            **kw, width=40, height=28, sh_degree=sh, render_mode=mode, rasterize_mode=rmode
        )
        return img, alpha

    check(
        fn,
        _gaussians(sh=sh),
        grads=("means", "quats", "scales", "opacities", "colors"),
        path=path,
        rtol=1e-3,
        atol=1e-4,
    )


# ---- knn, mesh, hashgrid ---------------------------------------------------------------------


def test_knn(path):
    pts = torch.rand(300, 3, generator=_gen(2))
    q = torch.rand(50, 3, generator=_gen(3))
    check(lambda points, queries: rs.knn(points, 4, queries), {"points": pts, "queries": q}, path=path)
    check(lambda points: rs.knn(points, 3, exclude_self=True), {"points": pts}, path=path)
    check(lambda points: rs.knn_scale_init(points), {"points": pts}, path=path)


def test_mesh(path):
    g = _gen(4)
    v = torch.rand(60, 3, generator=g) * 2 - 1
    v[:, 2] -= 4.0
    f = torch.randint(0, 60, (80, 3), generator=g)
    attr = torch.rand(60, 2, generator=g)
    K = torch.tensor([[40.0, 0, 16.0], [0, 40.0, 12.0], [0, 0, 1]])
    tex = torch.rand(8, 8, 3, generator=g)

    def fn(vertices, attributes, texture):
        r = rs.rasterize_mesh(
            vertices,
            f.to(vertices.device),
            viewmat=torch.eye(4, device=vertices.device),
            K=K.to(vertices.device),
            width=32,
            height=24,
            attributes=attributes,
        )
        out = [r.triangle_id, r.barycentrics, r.depth]
        if r.attributes is not None:
            out.append(r.attributes)
            out.append(rs.sample_texture(texture, r.attributes.clamp(0, 1)))
        return out

    check(
        fn,
        {"vertices": v, "attributes": attr, "texture": tex},
        grads=("attributes", "texture"),
        path=path,
        rtol=1e-4,
        atol=1e-5,
    )


def test_hashgrid(path):
    x = torch.rand(100, 3, generator=_gen(5))
    table = torch.randn(3, 2**10, 2, generator=_gen(6)) * 0.1
    check(
        lambda x, table: rs.hashgrid_encode(x, table, [8, 16, 64]),
        {"x": x, "table": table},
        grads=("table",),
        path=path,
    )


def test_rasterization_backgrounds_depth_and_covars(path):
    g = _gaussians(n=30, c=2)
    from raysplat.reference.splat import quat_to_rotmat

    r = quat_to_rotmat(g.pop("quats"))
    s = g.pop("scales")
    g["covars"] = (r @ torch.diag_embed(s**2) @ r.transpose(-1, -2))[
        :, [0, 0, 0, 1, 1, 2], [0, 1, 2, 1, 2, 2]
    ]
    g["backgrounds"] = torch.tensor([0.1, 0.2, 0.3])

    def fn(**kw):
        img, alpha, _ = rs.rasterization(
            **kw, quats=None, scales=None, width=40, height=28, render_mode="RGB+D"
        )
        return img, alpha

    check(fn, g, grads=("means", "covars", "opacities", "colors"), path=path, rtol=1e-3, atol=1e-4)


@pytest.mark.skipif(DEVICE == "cpu", reason="backend('rust') accepts CPU tensors")
def test_backend_rust_refuses_device_tensors():
    x = torch.rand(4, 5, device=DEVICE)
    with rs.backend("rust"), pytest.raises(ValueError, match="backend"):
        rs.inclusive_sum(x)


@pytest.mark.parametrize("camera_model", ["pinhole", "ortho", "fisheye"])
def test_rasterization_packed_viewmat_gradients_camera_models(path, camera_model):
    """gsplat 1.5 compatibility on the device: packed meta, gradients w.r.t. viewmats, and the
    ortho / fisheye camera models (gsplat itself on ``auto`` when it loads)."""
    g = _gaussians(n=40, c=2, sh=1)
    if camera_model == "ortho":
        g["Ks"][:, 0, 0] = g["Ks"][:, 1, 1] = 40 / 2.4

    def fn(**kw):
        img, alpha, meta = rs.rasterization(
            **kw, width=40, height=28, sh_degree=1, packed=True, camera_model=camera_model
        )
        return img, alpha, meta["camera_ids"], meta["gaussian_ids"], meta["radii"]

    # gsplat (auto, when it loads) may cull a border pair differently: compare its images and
    # gradients; raysplat's own paths must also agree on the packed ids and radii
    n_out = 2 if path == "auto" and _loads("gsplat") else None
    check(
        fn,
        g,
        grads=("means", "quats", "scales", "colors", "viewmats"),
        path=path,
        rtol=1e-3,
        atol=1e-4,
        n_out=n_out,
    )


def _loads(name: str) -> bool:
    from raysplat import _peers

    return DEVICE != "cpu" and torch.cuda.is_available() and _peers.peer(name) is not None


@pytest.mark.skipif(
    not _loads("nerfacc"), reason="nerfacc is not importable here or its CUDA extension does not load"
)
def test_forced_nerfacc_path():
    """``backend("nerfacc")``: every op nerfacc serves, on its kernels, vs the CPU Rust result."""
    t0, t1, sig, rgb = _intervals(RAY_INDICES.shape, seed=3)
    ri = RAY_INDICES
    n = len(COUNTS)
    check(
        lambda t_starts, t_ends, sigmas, rgbs, ray_indices: rs.volume_render(
            t_starts, t_ends, sigmas, rgbs, ray_indices, n
        ),
        {"t_starts": t0, "t_ends": t1, "sigmas": sig, "rgbs": rgb, "ray_indices": ri},
        grads=("sigmas", "rgbs"),
        path="nerfacc",
    )
    check(
        lambda alphas, ray_indices: rs.render_weight_from_alpha(alphas, ray_indices, n),
        {"alphas": 1 - torch.exp(-sig), "ray_indices": ri},
        grads=("alphas",),
        path="nerfacc",
    )
    for op in (rs.inclusive_sum, rs.exclusive_sum, rs.inclusive_prod, rs.exclusive_prod):
        check(
            lambda x, ray_indices, op=op: op(x, ray_indices=ray_indices, n_rays=n),
            {"x": sig * 0.3, "ray_indices": ri},
            grads=("x",),
            path="nerfacc",
        )
    edges = torch.sort(torch.rand(64, 17, generator=_gen(8)) * 4, -1).values
    w = torch.rand(64, 16, generator=_gen(9))
    w[3] = 0.0
    check(
        lambda t_edges, weights: rs.importance_sampling(t_edges, weights, 12, stratified=False),
        {"t_edges": edges, "weights": w},
        path="nerfacc",
        rtol=1e-4,
        atol=1e-4,
    )
    grid = rs.OccupancyGrid([-1, -1, -1, 1, 1, 1], 16, 2)
    grid.binaries.copy_(torch.rand(grid.binaries.shape, generator=_gen(1)) < 0.3)
    o, d = _grid_rays()

    def march(origins, directions, binaries):
        gr = grid if binaries.device.type == "cpu" else grid.to(binaries.device)
        return gr.sampling(origins, directions, near=0.1, far=8.0, render_step_size=0.02)

    check(march, {"origins": o, "directions": d, "binaries": grid.binaries}, path="nerfacc")


@pytest.mark.skipif(
    not _loads("gsplat"), reason="gsplat is not importable here or its CUDA extension does not load"
)
def test_forced_gsplat_path():
    def fn(**kw):
        img, alpha, _ = rs.rasterization(**kw, width=40, height=28, sh_degree=2, render_mode="RGB+ED")
        return img, alpha

    check(
        fn,
        _gaussians(sh=2),
        grads=("means", "quats", "scales", "opacities", "colors", "viewmats"),
        path="gsplat",
        rtol=1e-3,
        atol=1e-4,
    )
