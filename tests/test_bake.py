"""Texture baking (raysplat.bake): Rust vs torch twin vs brute force, gradients, cosine weights,
bake -> render consistency, UV coverage, hole filling, bad input."""

import pytest
import raysplat
import torch
from raysplat.reference import bake as ref
from raysplat.texgen import atlas


def _brute(colors, uv, weights, h, w):
    """One texel at a time: Σ w b c / Σ w b over the pixels whose footprint holds the texel."""
    idx, b = ref.footprint(uv, h, w)
    tex = torch.zeros(h * w, colors.shape[1], dtype=torch.float64)
    tw = torch.zeros(h * w, dtype=torch.float64)
    for t in range(h * w):
        num = torch.zeros(colors.shape[1], dtype=torch.float64)
        den = 0.0
        for p in range(colors.shape[0]):
            if weights[p] <= 0:
                continue
            for k in range(4):
                if int(idx[p, k]) == t:
                    num += weights[p] * b[p, k] * colors[p].double()
                    den += float(weights[p] * b[p, k])
        tw[t] = den
        if den > 0:
            tex[t] = num / den
    return tex.reshape(h, w, -1), tw.reshape(h, w)


def _pixels(n=300, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    colors = torch.rand(n, 3, generator=g, dtype=dtype)
    uv = torch.rand(n, 2, generator=g, dtype=dtype) * 1.2 - 0.1
    weights = torch.rand(n, generator=g, dtype=dtype)
    weights[weights < 0.2] = 0
    return colors, uv, weights


@pytest.mark.parametrize("mode", ["auto", "torch"])
def test_bake_matches_brute_force_and_is_convex(mode):
    colors, uv, weights = _pixels()
    uv[:, 1] = uv[:, 1] * 0.4  # the top rows stay uncovered
    with raysplat.backend(mode):
        tex, tw = raysplat.bake(colors, uv, weights, (9, 7))
    want_tex, want_tw = _brute(colors, uv, weights, 9, 7)
    torch.testing.assert_close(tex.double(), want_tex, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(tw.double(), want_tw, atol=1e-5, rtol=1e-5)
    cov = tw > 0
    assert bool(cov.any()) and bool((~cov).any())
    assert float(tex[cov].min()) >= -1e-6 and float(tex[cov].max()) <= 1 + 1e-6
    assert float(tex[~cov].abs().sum()) == 0


def test_bake_rust_equals_twin_on_views():
    colors, uv, weights = _pixels(4 * 32 * 32, seed=3)
    args = (colors.reshape(4, 32, 32, 3), uv.reshape(4, 32, 32, 2), weights.reshape(4, 32, 32), 64)
    with raysplat.backend("rust"):
        a = raysplat.bake(*args)
    with raysplat.backend("torch"):
        b = raysplat.bake(*args)
    torch.testing.assert_close(a[0], b[0], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(a[1], b[1], atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("mode", ["auto", "torch"])
def test_bake_gradcheck_float64(mode):
    g = torch.Generator().manual_seed(1)
    colors = torch.rand(40, 2, generator=g, dtype=torch.float64, requires_grad=True)
    uv = torch.rand(40, 2, generator=g, dtype=torch.float64)
    weights = (torch.rand(40, generator=g, dtype=torch.float64) + 0.1).requires_grad_()
    with raysplat.backend(mode):
        assert torch.autograd.gradcheck(lambda c, w: raysplat.bake(c, uv, w, 5), (colors, weights))


def test_view_weights_in_unit_range_and_zero_on_back_faces():
    g = torch.Generator().manual_seed(2)
    n = torch.nn.functional.normalize(torch.randn(500, 3, generator=g), dim=-1)
    d = torch.nn.functional.normalize(torch.randn(500, 3, generator=g), dim=-1)
    vis = torch.rand(500, generator=g) > 0.2
    for p in (0.0, 1.0, 6.0):
        w = raysplat.view_weights(n, d, vis, p)
        assert float(w.min()) >= 0 and float(w.max()) <= 1
        back = (n * d).sum(-1) >= 0
        assert float(w[back | ~vis].abs().max()) == 0
    assert raysplat.bake.__module__ == "raysplat.bake"


@pytest.fixture(scope="module")
def sphere():
    import trimesh

    m = trimesh.creation.icosphere(2)
    mesh = atlas.load_mesh((m.vertices, m.faces))
    c2w, K, _ = atlas.camera_ring(4, size=64)
    return mesh, atlas.view_buffers(mesh, c2w, K, 64)


def test_bake_then_render_reproduces_views(sphere):
    mesh, buf = sphere
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 128), torch.linspace(0, 1, 128), indexing="ij")
    truth = torch.stack([0.5 + 0.4 * torch.sin(3 * xx), 0.5 + 0.4 * torch.cos(2 * yy), xx * yy], -1)
    views = raysplat.render_texture(truth, buf.uv)
    w = buf.weights(2.0)
    tex, tw = raysplat.bake(views, buf.uv, w, 128)
    tex, _ = raysplat.fill_holes(tex, tw)
    again = raysplat.render_texture(tex, buf.uv)
    vis = w > 0
    err = (again - views).abs()[vis]
    assert float(err.mean()) < 0.01 and float(err.max()) < 0.1


def test_every_visible_pixel_lands_in_a_chart(sphere):
    mesh, buf = sphere
    size = 128
    charts = atlas.chart_mask(mesh, size)
    # one texel of slack: a pixel on a chart's edge may sit a fraction of a texel outside centres
    grown = torch.nn.functional.max_pool2d(charts[None, None].float(), 3, 1, 1)[0, 0] > 0
    uv = buf.uv[buf.visible]
    col = (uv[:, 0] * size).floor().long().clamp(0, size - 1)
    row = ((1 - uv[:, 1]) * size).floor().long().clamp(0, size - 1)
    assert bool(grown[row, col].all())
    assert 0.2 < float(charts.float().mean()) < 0.95


@pytest.mark.parametrize("mode", ["auto", "torch"])
def test_fill_holes_fills_everything(mode):
    g = torch.Generator().manual_seed(4)
    tex = torch.rand(20, 17, 3, generator=g)
    tw = (torch.rand(20, 17, generator=g) > 0.9).float()
    with raysplat.backend(mode):
        out, filled = raysplat.fill_holes(tex, tw)
    assert bool(filled.all())
    torch.testing.assert_close(out[tw > 0], tex[tw > 0])
    with raysplat.backend("torch"):
        twin, _ = raysplat.fill_holes(tex, tw)
    torch.testing.assert_close(out, twin, atol=1e-6, rtol=1e-6)


def test_bad_inputs_name_the_argument():
    colors, uv, weights = _pixels(10)
    with pytest.raises(ValueError, match="weights"):
        raysplat.bake(colors, uv, -weights - 1, 8)
    with pytest.raises(ValueError, match="uv"):
        raysplat.bake(colors, uv.clone().fill_(float("nan")), weights, 8)
    with pytest.raises(ValueError, match="leading"):
        raysplat.bake(colors, uv[:5], weights, 8)
    with pytest.raises(ValueError, match="size"):
        raysplat.bake(colors, uv, weights, 0)
    with pytest.raises(ValueError, match="texel_weight"):
        raysplat.fill_holes(torch.zeros(4, 4, 3), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="no faces"):
        atlas.load_mesh((torch.zeros(3, 3).numpy(), torch.zeros(0, 3).long().numpy()))
