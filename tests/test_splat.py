"""Gaussian splatting: Rust rasterizer vs the torch twin, brute force, gradcheck, gsplat."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import raysplat as rs
import torch
from raysplat import _core
from raysplat.reference import splat as ref
from raysplat.splat import rasterization
from torch.autograd import gradcheck
from torch.testing import assert_close

PARAMS = ("means", "quats", "scales", "opacities", "colors")


def make_scene(n=40, c=2, width=40, height=28, dtype=torch.float32, sh_degree=None, channels=3, seed=0):
    """Random Gaussians in front of ``c`` cameras looking down +z from z = -4 (some off-image)."""
    g = torch.Generator().manual_seed(seed)
    means = torch.rand(n, 3, generator=g, dtype=dtype) * 2 - 1
    quats = torch.randn(n, 4, generator=g, dtype=dtype)
    scales = torch.rand(n, 3, generator=g, dtype=dtype) * 0.15 + 0.03
    opacities = torch.rand(n, generator=g, dtype=dtype) * 0.7 + 0.2
    if sh_degree is None:
        colors = torch.rand(n, channels, generator=g, dtype=dtype)
    else:
        colors = torch.randn(n, (sh_degree + 1) ** 2, 3, generator=g, dtype=dtype) * 0.4
    viewmats = torch.eye(4, dtype=dtype).repeat(c, 1, 1)
    viewmats[:, 2, 3] = 4.0
    if c > 1:
        ang = torch.tensor(0.3, dtype=dtype)
        rot = torch.tensor([[ang.cos(), 0, ang.sin()], [0, 1, 0], [-ang.sin(), 0, ang.cos()]], dtype=dtype)
        viewmats[1, :3, :3] = rot
        viewmats[1, 0, 3] = 0.4
    Ks = torch.tensor([[60.0, 0, width / 2], [0, 55.0, height / 2 - 1.5], [0, 0, 1]], dtype=dtype).repeat(
        c, 1, 1
    )
    return {
        "means": means,
        "quats": quats,
        "scales": scales,
        "opacities": opacities,
        "colors": colors,
        "viewmats": viewmats,
        "Ks": Ks,
        "width": width,
        "height": height,
        "sh_degree": sh_degree,
    }


def render(scene, backend, grad=False, **kw):
    """Renders with ``backend``; returns (img, alphas, meta, leaf params)."""
    params = {k: scene[k].clone().requires_grad_(grad) for k in PARAMS}
    with rs.backend(backend):
        img, alphas, meta = rasterization(**{**scene, **params, **kw})
    if grad:
        meta["means2d"].retain_grad()
    return img, alphas, meta, params


def both_grads(scene, seed=3, **kw):
    out = {}
    for backend in ("rust", "torch"):
        img, alphas, meta, params = render(scene, backend, grad=True, **kw)
        g = torch.Generator().manual_seed(seed)
        w_img = torch.randn(img.shape, generator=g, dtype=img.dtype)
        w_alpha = torch.randn(alphas.shape, generator=g, dtype=img.dtype)
        ((img * w_img).sum() + (alphas * w_alpha).sum()).backward()
        out[backend] = (img, alphas, meta, {k: p.grad for k, p in params.items()})
    return out["rust"], out["torch"]


MODES = ["RGB", "D", "ED", "RGB+D", "RGB+ED"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("bg", [False, True])
def test_forward_matches_twin(mode, bg):
    scene = make_scene()
    backgrounds = torch.tensor([[0.2, 0.5, 0.9], [1.0, 0.0, 0.3]]) if bg else None
    ri, ra, rm, _ = render(scene, "rust", render_mode=mode, backgrounds=backgrounds)
    ti, ta, tm, _ = render(scene, "torch", render_mode=mode, backgrounds=backgrounds)
    d = {"RGB": 3, "D": 1, "ED": 1, "RGB+D": 4, "RGB+ED": 4}[mode]
    assert ri.shape == (2, 28, 40, d) and ra.shape == (2, 28, 40, 1)
    assert torch.equal(rm["radii"], tm["radii"])
    assert rm["radii"].dtype == torch.int32 and rm["radii"].shape == (2, 40, 2)
    for k in ("means2d", "depths", "conics"):
        assert_close(rm[k], tm[k], rtol=1e-5, atol=1e-5)
    assert torch.equal(rm["tiles_per_gauss"], tm["tiles_per_gauss"])
    assert torch.equal(rm["isect_offsets"], tm["isect_offsets"])
    assert torch.equal(rm["flatten_ids"], tm["flatten_ids"])
    assert_close(ri, ti, rtol=1e-4, atol=2e-5)
    assert_close(ra, ta, rtol=1e-4, atol=2e-5)
    assert float(ra.max()) > 0.5  # the scene is not empty


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"render_mode": "RGB+ED", "backgrounds": torch.tensor([[0.1, 0.2, 0.3], [0.3, 0.2, 0.1]])},
        {"rasterize_mode": "antialiased"},
        {"render_mode": "D", "rasterize_mode": "antialiased"},
    ],
)
def test_gradients_match_twin(kw):
    scene = make_scene()
    (ri, ra, rm, rg), (ti, ta, tm, tg) = both_grads(scene, **kw)
    assert_close(ri, ti, rtol=1e-4, atol=2e-5)
    for k in PARAMS:
        if tg[k] is None:  # colors in depth-only modes
            assert rg[k] is None and k == "colors" and kw.get("render_mode") == "D"
            continue
        scale = tg[k].abs().max()
        assert scale > 0, k
        assert_close(rg[k], tg[k], rtol=1e-3, atol=1e-4 * float(scale), msg=k)
    assert_close(
        rm["means2d"].grad, tm["means2d"].grad, rtol=1e-3, atol=1e-4 * float(tm["means2d"].grad.abs().max())
    )


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_sh_matches_twin(degree):
    scene = make_scene(sh_degree=degree)
    (ri, _, _, rg), (ti, _, _, tg) = both_grads(scene)
    assert_close(ri, ti, rtol=1e-4, atol=2e-5)
    for k in PARAMS:
        assert_close(rg[k], tg[k], rtol=1e-3, atol=1e-4 * float(tg[k].abs().max()), msg=k)


def test_sh_lower_degree_than_coefficients():
    """sh_degree below what K allows (the training schedule): extra coefficients get no grad."""
    scene = make_scene(sh_degree=3)
    scene["sh_degree"] = 1
    (ri, _, _, rg), (ti, _, _, tg) = both_grads(scene)
    assert_close(ri, ti, rtol=1e-4, atol=2e-5)
    assert_close(rg["colors"], tg["colors"], rtol=1e-3, atol=1e-5)
    assert float(rg["colors"][:, 4:].abs().max()) == 0.0


def test_sh_degree0_is_constant_colour():
    scene = make_scene(sh_degree=0)
    plain = dict(scene, colors=(scene["colors"][:, 0] * ref.SH_C0 + 0.5).clamp_min(0), sh_degree=None)
    assert_close(render(scene, "rust")[0], render(plain, "rust")[0], rtol=1e-5, atol=1e-6)


def test_brute_force_compositing():
    scene = make_scene(n=30, c=2, width=37, height=21, channels=2)
    img, alphas, meta, _ = render(scene, "rust", render_mode="RGB+D")
    feats = torch.cat([scene["colors"][None].expand(2, -1, -1), meta["depths"][..., None]], -1)
    bi, ba = ref.brute_force(
        meta["means2d"], meta["conics"], feats, meta["opacities"], meta["depths"], meta["radii"], 37, 21
    )
    assert_close(img, bi, rtol=1e-4, atol=1e-5)
    assert_close(alphas, ba, rtol=1e-4, atol=1e-5)


def test_opaque_stack_terminates_early():
    """Many opaque Gaussians on one spot: transmittance stops above 1e-4 as in gsplat."""
    n = 12
    scene = make_scene(n=n, c=1, width=16, height=16)
    scene["means"] = torch.zeros(n, 3)
    scene["means"][:, 2] = torch.linspace(0, 1, n)
    scene["scales"] = torch.full((n, 3), 0.5)
    scene["opacities"] = torch.full((n,), 0.95)
    img, alphas, meta, _ = render(scene, "rust")
    bi, ba = ref.brute_force(
        meta["means2d"],
        meta["conics"],
        scene["colors"][None],
        meta["opacities"],
        meta["depths"],
        meta["radii"],
        16,
        16,
    )
    assert_close(img, bi, rtol=1e-4, atol=1e-5)
    assert float(alphas.max()) < 1 - 1e-4 + 1e-6
    assert float(alphas.max()) > 0.999
    ti, ta, _, _ = render(scene, "torch")
    assert_close(img, ti, rtol=1e-4, atol=1e-5)


def _gradcheck_scene(sh_degree=None, aa=False):
    n = 3
    scene = make_scene(n=n, c=1, width=8, height=8, dtype=torch.float64, sh_degree=sh_degree, seed=5)
    scene["means"] = torch.tensor(
        [[0.05, 0.02, 0.0], [-0.04, 0.06, 0.3], [0.0, -0.05, -0.2]], dtype=torch.float64
    )
    scene["scales"] = torch.tensor(
        [[0.3, 0.25, 0.2], [0.25, 0.35, 0.3], [0.4, 0.3, 0.35]], dtype=torch.float64
    )
    scene["opacities"] = torch.tensor([0.5, 0.6, 0.4], dtype=torch.float64)
    scene["Ks"] = torch.tensor([[[40.0, 0, 4.1], [0, 42.0, 3.9], [0, 0, 1]]], dtype=torch.float64)
    return scene


@pytest.mark.parametrize(
    "case", [{}, {"sh_degree": 3}, {"aa": True}, {"render_mode": "RGB+ED"}], ids=["rgb", "sh3", "aa", "ed"]
)
def test_gradcheck_float64(case):
    scene = _gradcheck_scene(case.get("sh_degree"), case.get("aa", False))
    kw = {"rasterize_mode": "antialiased"} if case.get("aa") else {}
    if "render_mode" in case:
        kw["render_mode"] = case["render_mode"]
    inputs = tuple(scene[k].clone().requires_grad_(True) for k in PARAMS)

    def f(*xs):
        with rs.backend("rust"):
            img, alphas, _ = rasterization(**{**scene, **dict(zip(PARAMS, xs, strict=True)), **kw})
        return img, alphas

    assert float(f(*inputs)[1].detach().min()) > 1e-3  # every pixel covered: smooth everywhere
    assert gradcheck(f, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_float64_outputs():
    scene = make_scene(dtype=torch.float64)
    img, alphas, meta, _ = render(scene, "rust")
    assert img.dtype == alphas.dtype == meta["means2d"].dtype == torch.float64
    ti, _, _, _ = render(scene, "torch")
    assert_close(img, ti, rtol=1e-9, atol=1e-10)


def test_batched_cameras_equal_single():
    scene = make_scene(c=2)
    img, alphas, meta, _ = render(scene, "rust", render_mode="RGB+D")
    for c in range(2):
        one = dict(scene, viewmats=scene["viewmats"][c : c + 1], Ks=scene["Ks"][c : c + 1])
        i1, a1, m1, _ = render(one, "rust", render_mode="RGB+D")
        assert torch.equal(i1[0], img[c]) and torch.equal(a1[0], alphas[c])
        assert torch.equal(m1["radii"][0], meta["radii"][c])


def test_per_camera_colors():
    scene = make_scene(c=2, channels=5)
    per_cam = scene["colors"][None].repeat(2, 1, 1)
    per_cam[1] = 1 - per_cam[1]
    for backend in ("rust", "torch"):
        img, _, _, _ = render(dict(scene, colors=per_cam), backend)
        one, _, _, _ = render(
            dict(scene, colors=per_cam[1], viewmats=scene["viewmats"][1:], Ks=scene["Ks"][1:]), backend
        )
        assert img.shape[-1] == 5
        assert_close(img[1], one[0])


def test_culling_near_far_and_offscreen():
    scene = make_scene(n=4, c=1)
    scene["means"] = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, -4.5], [30.0, 0.0, 0.0], [0.0, 0.0, 10.0]])
    _, _, meta, _ = render(scene, "rust", far_plane=12.0)
    radii = meta["radii"][0]
    assert (radii[0] > 0).all()
    assert (radii[1:] == 0).all()  # behind the camera, off-screen, beyond far
    assert (meta["tiles_per_gauss"][0, 1:] == 0).all()
    _, _, tmeta, _ = render(scene, "torch", far_plane=12.0)
    assert torch.equal(tmeta["radii"], meta["radii"])
    # culled Gaussians receive no gradient
    (_, _, _, rg), _ = both_grads(scene, far_plane=12.0)
    assert float(rg["means"][1:].abs().max()) == 0.0


def test_transparent_gaussians_are_culled():
    scene = make_scene(n=5, c=1)
    scene["opacities"] = torch.full((5,), 1.0 / 300)
    img, alphas, meta, _ = render(scene, "rust")
    assert (meta["radii"] == 0).all() and float(alphas.max()) == 0.0


def test_absgrad_matches_twin():
    scene = make_scene()
    res = {}
    for backend in ("rust", "torch"):
        img, alphas, meta, _ = render(scene, backend, grad=True, absgrad=True)
        (img.sum() - 2 * alphas.sum()).backward()
        res[backend] = meta["means2d"]
    r, t = res["rust"], res["torch"]
    assert r.absgrad.shape == (2, 40, 2)
    assert_close(r.absgrad, t.absgrad, rtol=1e-3, atol=1e-5)
    assert bool((r.absgrad >= r.grad.abs() - 1e-6).all())
    assert float(r.absgrad.max()) > 0


def test_deterministic_across_thread_counts():
    scene = make_scene(n=300, c=2, width=64, height=48)
    before = rs.get_num_threads()
    grads = []
    try:
        for threads in (1, 2, 3):
            rs.set_num_threads(threads)
            ((_, _, m, g),) = [both_grads(scene)[0]]
            grads.append([g[k] for k in PARAMS] + [m["means2d"].grad])
    finally:
        rs.set_num_threads(before)
    for other in grads[1:]:
        for a, b in zip(grads[0], other, strict=True):
            assert torch.equal(a, b)


def test_empty_scene():
    scene = make_scene(n=0, c=1)
    for backend in ("rust", "torch"):
        img, alphas, meta, _ = render(scene, backend, backgrounds=torch.tensor([[0.5, 0.5, 0.5]]))
        assert img.shape == (1, 28, 40, 3)
        assert float(alphas.abs().max()) == 0.0
        assert_close(img, torch.full_like(img, 0.5))


def test_non_square_partial_tiles():
    scene = make_scene(n=60, c=1, width=33, height=17)
    ri, ra, _, _ = render(scene, "rust")
    ti, ta, _, _ = render(scene, "torch")
    assert_close(ri, ti, rtol=1e-4, atol=2e-5)
    assert_close(ra, ta, rtol=1e-4, atol=2e-5)


# ----------------------------------------------------------------------------- bad inputs


def _bad(**changes):
    scene = make_scene(n=4, c=1)
    scene.update(changes)
    return scene


@pytest.mark.parametrize(
    ("changes", "exc", "name"),
    [
        ({"means": torch.zeros(4, 2)}, ValueError, "means"),
        ({"means": [[0.0, 0.0, 0.0]]}, TypeError, "means"),
        ({"quats": torch.zeros(4, 3)}, ValueError, "quats"),
        ({"scales": torch.zeros(5, 3)}, ValueError, "scales"),
        ({"opacities": torch.zeros(4, 1)}, ValueError, "opacities"),
        ({"opacities": torch.zeros(4, dtype=torch.long)}, TypeError, "opacities"),
        ({"colors": torch.zeros(3, 3)}, ValueError, "colors"),
        ({"colors": torch.zeros(2, 4, 3)}, ValueError, "colors"),
        ({"viewmats": torch.eye(3)[None]}, ValueError, "viewmats"),
        ({"Ks": torch.eye(3)[None].repeat(2, 1, 1)}, ValueError, "Ks"),
        ({"Ks": torch.zeros(1, 3, 3)}, ValueError, "Ks"),
        ({"width": 0}, ValueError, "width"),
        ({"height": 2.5}, TypeError, "height"),
        ({"sh_degree": 4, "colors": torch.zeros(4, 25, 3)}, ValueError, "sh_degree"),
        ({"sh_degree": 2, "colors": torch.zeros(4, 4, 3)}, ValueError, "colors"),
        ({"means": torch.full((4, 3), float("nan"))}, ValueError, "means"),
        ({"opacities": torch.tensor([0.5, float("inf"), 0.5, 0.5])}, ValueError, "opacities"),
    ],
)
@pytest.mark.parametrize("backend", ["rust", "torch"])
def test_bad_inputs(changes, exc, name, backend):
    with pytest.raises(exc, match=name), rs.backend(backend):
        rasterization(**_bad(**changes))


@pytest.mark.parametrize(
    ("kw", "name"),
    [
        ({"render_mode": "RGBD"}, "render_mode"),
        ({"rasterize_mode": "fast"}, "rasterize_mode"),
        ({"near_plane": -1.0}, "near_plane"),
        ({"eps2d": -0.1}, "eps2d"),
        ({"tile_size": 8}, "tile_size"),
        ({"camera_model": "ftheta"}, "camera_model"),
        ({"backgrounds": torch.zeros(1, 2)}, "backgrounds"),
    ],
)
def test_bad_options(kw, name):
    with pytest.raises(ValueError, match=name):
        rasterization(**_bad(), **kw)


# ----------------------------------------------------------------------------- gsplat


def test_matches_gsplat_torch_reference():
    """gsplat's pure-torch projection and SH (they run on CPU) agree with ours."""
    impl = pytest.importorskip("gsplat.cuda._torch_impl")
    scene = make_scene(sh_degree=3)
    _, _, meta, _ = render(scene, "rust")
    out = impl._fully_fused_projection(
        scene["means"],
        None,
        scene["quats"] / scene["quats"].norm(dim=-1, keepdim=True),
        scene["scales"],
        scene["viewmats"],
        scene["Ks"],
        scene["width"],
        scene["height"],
        eps2d=0.3,
        near_plane=0.01,
        far_plane=1e10,
    )
    radii, means2d, depths, conics = out[:4]
    vis = (meta["radii"] > 0).all(-1)
    assert_close(meta["means2d"][vis], means2d[vis], rtol=1e-4, atol=1e-4)
    assert_close(meta["conics"][vis], conics[vis], rtol=1e-4, atol=1e-5)
    assert_close(meta["depths"][vis], depths[vis])
    dirs = scene["means"][None] - torch.linalg.inv(scene["viewmats"])[:, None, :3, 3]
    want = impl._spherical_harmonics(3, dirs, scene["colors"][None].expand(2, -1, -1, -1))
    got = ref.sh_colors(3, scene["colors"], scene["means"], torch.linalg.inv(scene["viewmats"])[:, :3, 3])
    assert_close(got, want, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ golden values from gsplat

GOLDEN_PATH = Path(__file__).with_name("data") / "splat_golden.npz"


def _golden(name: str) -> tuple[dict[str, torch.Tensor], int, int]:
    """Scene ``name`` of ``scripts/make_splat_golden.py``: inputs and gsplat's torch outputs."""
    data = np.load(GOLDEN_PATH)
    g = {k[len(name) + 1 :]: torch.from_numpy(data[k]) for k in data.files if k.startswith(name + "_")}
    width, height = (int(v) for v in data["size"])
    return g, width, height


@pytest.mark.parametrize("name", ["a", "b"])
@pytest.mark.parametrize("backend", ["rust", "torch"])
def test_projection_matches_gsplat_golden(name, backend):
    """EWA projection (means2d, depths, conics, compensations, radii) equals gsplat's own torch
    implementation on fixed scenes (float64), through the public ``rasterization``."""
    g, width, height = _golden(name)
    n = g["means"].shape[0]
    args = (g["means"], g["quats"], g["scales"], torch.ones(n, dtype=torch.float64))
    kw = dict(viewmats=g["viewmats"], Ks=g["Ks"], width=width, height=height, eps2d=0.3, near_plane=0.01)
    with rs.backend(backend):
        _, _, meta = rasterization(*args, torch.zeros(n, 3, dtype=torch.float64), **kw)
        _, _, meta_aa = rasterization(
            *args, torch.zeros(n, 3, dtype=torch.float64), rasterize_mode="antialiased", **kw
        )
    ours = (meta["radii"] > 0).all(-1)
    theirs = (g["radii"] > 0).all(-1)
    # gsplat 1.5.3's torch code extends 3.33 sigma; raysplat (like gsplat's CUDA kernels)
    # sqrt(2 ln(255 opacity)) <= 3.33 sigma, i.e. 3.329 sigma at opacity 1: radii agree to one
    # pixel, and a pair gsplat keeps is dropped only if it touches the image by under a pixel
    assert bool((ours <= theirs).all())
    assert int(theirs.sum()) - int(ours.sum()) <= 2 and int(ours.sum()) > n // 2
    diff = g["radii"][ours] - meta["radii"][ours].long()
    assert bool(((diff >= 0) & (diff <= 1)).all()) and float((diff == 0).float().mean()) > 0.9
    assert_close(meta["means2d"][ours], g["means2d"][ours], rtol=1e-9, atol=1e-9)
    assert_close(meta["depths"][ours], g["depths"][ours], rtol=1e-12, atol=1e-12)
    assert_close(meta["conics"][ours], g["conics"][ours], rtol=1e-9, atol=1e-12)
    both = ours & (meta_aa["radii"] > 0).all(-1)
    assert int(both.sum()) > n // 4
    assert_close(meta_aa["compensations"][both], g["compensations"][both], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ["a", "b"])
@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_sh_colours_match_gsplat_golden(name, degree):
    """View-dependent SH colours (before the +0.5 offset) equal gsplat's ``_spherical_harmonics``
    on fixed scenes, in the Rust kernel and in the torch twin."""
    g, _, _ = _golden(name)
    coeffs, means = g["coeffs"][:, : (degree + 1) ** 2].contiguous(), g["means"]
    campos = torch.linalg.inv(g["viewmats"])[:, :3, 3].contiguous()
    want = g[f"sh{degree}"]
    k = coeffs.shape[1]
    rust = torch.from_numpy(_core.splat_sh(degree, coeffs.numpy(), k, means.numpy(), campos.numpy()))
    assert_close(rust.reshape(want.shape), want, rtol=1e-10, atol=1e-12)
    assert_close(ref.sh_colors(degree, coeffs, means, campos), want, rtol=1e-10, atol=1e-12)


# ---- gsplat 1.5 keywords --------------------------------------------------------------------


def _covars(quats, scales, upper=False):
    from raysplat.reference.splat import quat_to_rotmat

    r = quat_to_rotmat(quats)
    cov = r @ torch.diag_embed(scales**2) @ r.transpose(-1, -2)
    if upper:
        return cov[:, [0, 0, 0, 1, 1, 2], [0, 1, 2, 1, 2, 2]]
    return cov


@pytest.mark.parametrize("upper", [False, True])
@pytest.mark.parametrize("path", ["auto", "torch"])
def test_covars_match_quats_and_scales(upper, path):
    s = make_scene(n=30, c=2)
    with rs.backend(path):
        want, want_a, _ = rs.rasterization(**s)
        covars = _covars(s["quats"], s["scales"], upper)
        kw = {k: v for k, v in s.items() if k not in ("quats", "scales")}
        got, got_a, _ = rs.rasterization(quats=None, scales=None, covars=covars, channel_chunk=8, **kw)
    assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert_close(got_a, want_a, rtol=1e-4, atol=1e-5)


def test_covars_gradients_match_twin_and_gradcheck():
    s = make_scene(n=6, c=1, width=12, height=10, dtype=torch.float64)
    cov0 = _covars(s["quats"], s["scales"], upper=True).detach()
    kw = {k: v for k, v in s.items() if k not in ("quats", "scales")}

    def f(cov):
        img, alpha, _ = rs.rasterization(quats=None, scales=None, covars=cov, **kw)
        return img, alpha

    grads = []
    for path in ("rust", "torch"):
        cov = cov0.clone().requires_grad_(True)
        with rs.backend(path):
            img, alpha = f(cov)
            (img.sum() + alpha.sum()).backward()
        grads.append(cov.grad)
    assert_close(grads[0], grads[1], rtol=1e-6, atol=1e-8)
    assert grads[0].abs().sum() > 0
    assert gradcheck(lambda c: f(c)[0], (cov0.clone().requires_grad_(True),), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize(
    "kw",
    [
        {"distributed": True},
        {"segmented": True},
        {"with_ut": True},
        {"with_eval3d": True},
        {"rolling_shutter": "ROLLING_TOP_TO_BOTTOM"},
        {"radial_coeffs": torch.zeros(2, 6)},
        {"viewmats_rs": torch.eye(4).repeat(2, 1, 1)},
        {"camera_model": "ftheta"},
        {"tangential_coeffs": torch.zeros(2, 2)},
        {"thin_prism_coeffs": torch.zeros(2, 4)},
        {"ftheta_coeffs": object()},
        {"channel_chunk": 0},
    ],
    ids=lambda kw: next(iter(kw)),
)
def test_unsupported_gsplat_keywords_name_themselves(kw):
    name = next(iter(kw))
    with pytest.raises(ValueError, match=name):
        rs.rasterization(**make_scene(n=5), **kw)


def test_gsplat_defaults_and_global_shutter_are_accepted():
    s = make_scene(n=5)
    want, _, _ = rs.rasterization(**s)
    got, _, _ = rs.rasterization(
        **s, channel_chunk=32, distributed=False, segmented=False, with_ut=False, with_eval3d=False,
        rolling_shutter="global", camera_model="pinhole",
    )  # fmt: skip
    assert torch.equal(got, want)
    with pytest.raises(ValueError, match="quats and scales"):
        rs.rasterization(**{**s, "quats": None})


# ------------------------------------------- packed meta, viewmat gradients, camera models


def _scene_for(camera_model, **kw):
    """``make_scene`` with intrinsics that keep most Gaussians on the image for the model."""
    s = make_scene(**kw)
    if camera_model == "ortho":
        s["Ks"] = s["Ks"].clone()
        s["Ks"][:, 0, 0] = s["width"] / 2.4
        s["Ks"][:, 1, 1] = s["width"] / 2.4
    return s


@pytest.mark.parametrize("backend", ["rust", "torch"])
@pytest.mark.parametrize("aa", ["classic", "antialiased"])
def test_packed_meta_matches_dense(backend, aa):
    s = make_scene(n=40, c=2)
    dense_img, dense_a, dense, _ = render(s, backend, rasterize_mode=aa, render_mode="RGB+ED")
    img, alphas, meta, _ = render(s, backend, rasterize_mode=aa, render_mode="RGB+ED", packed=True)
    assert_close(img, dense_img, rtol=0, atol=0)
    assert_close(alphas, dense_a, rtol=0, atol=0)
    vis = (dense["radii"] > 0).any(-1)
    cams, gids = torch.nonzero(vis, as_tuple=True)
    assert meta["camera_ids"].dtype == torch.long and torch.equal(meta["camera_ids"], cams)
    assert torch.equal(meta["gaussian_ids"], gids)
    nnz = int(vis.sum())
    assert 0 < nnz < 2 * 40, "some pairs culled, some visible"
    for key, shape in (("radii", (nnz, 2)), ("means2d", (nnz, 2)), ("conics", (nnz, 3)), ("depths", (nnz,))):
        assert tuple(meta[key].shape) == shape
        assert torch.equal(meta[key], dense[key][cams, gids]), key
    assert torch.equal(meta["opacities"], dense["opacities"][cams, gids])
    assert torch.equal(meta["tiles_per_gauss"], dense["tiles_per_gauss"][cams, gids])
    if aa == "antialiased":
        assert torch.equal(meta["compensations"], dense["compensations"][cams, gids])
    # flatten_ids index the packed pairs: the same intersections as the dense ids
    fid = meta["flatten_ids"]
    assert torch.equal(meta["camera_ids"][fid] * 40 + meta["gaussian_ids"][fid], dense["flatten_ids"])
    assert torch.equal(meta["isect_offsets"], dense["isect_offsets"])


def test_packed_gradients_rust_vs_twin():
    s = make_scene(n=30, c=2, sh_degree=1)
    rust, torch_ = both_grads(s, packed=True, absgrad=True, rasterize_mode="antialiased")
    dense, _ = both_grads(s, absgrad=True, rasterize_mode="antialiased")
    for k in PARAMS:
        assert_close(rust[3][k], torch_[3][k], rtol=1e-4, atol=1e-5)
        assert_close(rust[3][k], dense[3][k], rtol=1e-5, atol=1e-6)
    m_r, m_t, m_d = rust[2], torch_[2], dense[2]
    nnz = m_r["camera_ids"].numel()
    assert tuple(m_r["means2d"].grad.shape) == (nnz, 2)
    assert_close(m_r["means2d"].grad, m_t["means2d"].grad, rtol=1e-4, atol=1e-5)
    cams, gids = m_r["camera_ids"], m_r["gaussian_ids"]
    assert_close(m_r["means2d"].grad, m_d["means2d"].grad[cams, gids], rtol=1e-5, atol=1e-6)
    for m in (m_r, m_t):
        assert tuple(m["means2d"].absgrad.shape) == (nnz, 2)
        assert_close(m["means2d"].absgrad, m_d["means2d"].absgrad[cams, gids], rtol=1e-4, atol=1e-5)


def test_packed_gradcheck_float64():
    s = make_scene(n=6, c=2, width=12, height=10, dtype=torch.float64)
    kw = {k: v for k, v in s.items() if k != "means"}

    def f(means):
        img, alpha, _ = rasterization(means=means, packed=True, **kw)
        return img, alpha

    assert gradcheck(f, (s["means"].clone().requires_grad_(True),), eps=1e-6, atol=1e-5)


def _viewmat_grads(s, backend, **kw):
    s = dict(s)
    params = {k: s.pop(k).clone().requires_grad_(True) for k in ("means", "viewmats")}
    with rs.backend(backend):
        img, alphas, _ = rasterization(**s, **params, **kw)
    g = torch.Generator().manual_seed(7)
    w = torch.randn(img.shape, generator=g, dtype=img.dtype)
    ((img * w).sum() + alphas.sum()).backward()
    return img, params["viewmats"].grad, params["means"].grad


@pytest.mark.parametrize("camera_model", ["pinhole", "ortho", "fisheye"])
@pytest.mark.parametrize("sh_degree", [None, 2])
def test_viewmat_gradients_rust_vs_twin(camera_model, sh_degree):
    s = _scene_for(camera_model, n=30, c=2, sh_degree=sh_degree)
    img_r, v_r, m_r = _viewmat_grads(s, "rust", camera_model=camera_model, rasterize_mode="antialiased")
    img_t, v_t, m_t = _viewmat_grads(s, "torch", camera_model=camera_model, rasterize_mode="antialiased")
    assert_close(img_r, img_t, rtol=1e-4, atol=1e-5)
    assert v_r is not None and v_r.abs().sum() > 0
    assert_close(v_r, v_t, rtol=1e-3, atol=1e-3)
    assert_close(m_r, m_t, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("camera_model", ["pinhole", "ortho", "fisheye"])
def test_viewmat_and_camera_model_gradcheck_float64(camera_model):
    """gradcheck through the Rust kernels w.r.t. viewmats, means, quats, scales and SH colours."""
    s = _scene_for(camera_model, n=6, c=2, width=12, height=10, dtype=torch.float64, sh_degree=1)
    s["Ks"] = s["Ks"] * torch.tensor([0.25, 0.25, 0.3], dtype=torch.float64)[:, None]
    s["Ks"][:, 2, 2] = 1.0
    names = ("viewmats", "means", "quats", "scales", "colors")
    rest = {k: v for k, v in s.items() if k not in names}

    def f(*xs):
        with rs.backend("rust"):
            img, alpha, meta = rasterization(
                **dict(zip(names, xs, strict=True)), **rest, camera_model=camera_model,
                rasterize_mode="antialiased",
            )  # fmt: skip
        assert int((meta["radii"] > 0).any(-1).sum()) >= 6
        return img, alpha

    xs = tuple(s[k].clone().requires_grad_(True) for k in names)
    assert gradcheck(f, xs, eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("camera_model", ["ortho", "fisheye"])
@pytest.mark.parametrize("mode", ["RGB+ED", "D"])
def test_camera_models_rust_vs_twin(camera_model, mode):
    s = _scene_for(camera_model, n=40, c=2, sh_degree=1)
    rust, torch_ = both_grads(s, render_mode=mode, camera_model=camera_model)
    assert_close(rust[0], torch_[0], rtol=1e-4, atol=1e-5)
    assert_close(rust[1], torch_[1], rtol=1e-4, atol=1e-5)
    assert int((rust[2]["radii"] > 0).any(-1).sum()) > 20
    for k in PARAMS:
        assert_close(rust[3][k], torch_[3][k], rtol=1e-3, atol=1e-4)


def test_camera_models_place_points_by_their_formula():
    """Independent check of where a Gaussian's centre lands: ``(fx x + cx, fy y + cy)`` for
    ortho; at ``f * angle-from-axis`` from the principal point, towards the point, for fisheye."""
    pts = torch.tensor([[0.3, -0.2, 2.0], [-0.5, 0.4, 1.0], [0.05, 0.02, 3.0]], dtype=torch.float64)
    n = pts.shape[0]
    fx, cx, cy = 20.0, 30.0, 25.0
    Ks = torch.tensor([[[fx, 0, cx], [0, fx, cy], [0, 0, 1]]], dtype=torch.float64)
    scene = {
        "means": pts,
        "quats": torch.tensor([[1.0, 0, 0, 0]], dtype=torch.float64).repeat(n, 1),
        "scales": torch.full((n, 3), 0.05, dtype=torch.float64),
        "opacities": torch.full((n,), 0.9, dtype=torch.float64),
        "colors": torch.rand(n, 3, dtype=torch.float64),
        "viewmats": torch.eye(4, dtype=torch.float64)[None],
        "Ks": Ks,
        "width": 60,
        "height": 50,
    }
    for backend in ("rust", "torch"):
        with rs.backend(backend):
            _, _, mo = rasterization(**scene, camera_model="ortho")
            _, _, mf = rasterization(**scene, camera_model="fisheye")
        np.testing.assert_allclose(
            mo["means2d"][0].numpy(), (fx * pts[:, :2] + torch.tensor([cx, cy])).numpy()
        )
        for i, (x, y, z) in enumerate(pts.tolist()):
            angle = math.atan(math.hypot(x, y) / z)
            off = mf["means2d"][0, i].numpy() - np.array([cx, cy])
            np.testing.assert_allclose(np.hypot(*off), fx * angle, rtol=1e-5)
            np.testing.assert_allclose(math.atan2(off[1], off[0]), math.atan2(y, x), atol=1e-6)


def test_binding_rejects_unknown_camera_model():
    s = make_scene(n=4, c=1)
    args = [s[k].numpy() for k in ("means", "quats", "scales", "opacities", "viewmats", "Ks")]
    with pytest.raises(ValueError, match="camera_model"):
        _core.splat_project(*args, 40, 28, 0.01, 100.0, 0.3, False, "ftheta")
