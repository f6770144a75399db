"""raysplat.texgen: DDIM and guidance identities, the sampler on the analytic texture-mixture
prior and end to end with the tiny Stable Diffusion (+ tiny depth ControlNet), KV sharing,
outputs, CLI and bad input."""

import json
import math

import numpy as np
import pytest
import torch
import trimesh
from raysplat import cli
from raysplat.guidance import StableDiffusionPrior, TextureMixturePrior, add_noise, tiny_stable_diffusion
from raysplat.guidance.analytic import _mixture_eps
from raysplat.texgen import (
    KVBank,
    TexGenConfig,
    camera_ring,
    ddim_step,
    ddim_timesteps,
    generate_texture,
    load_mesh,
    multi_cfg,
    shared_attention,
    view_suffix,
)


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is fastest, and this machine is shared
    yield
    torch.set_num_threads(n)


def test_ddim_one_step_recovery_with_true_noise():
    ac = torch.linspace(0.999, 0.01, 1000)
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    t = torch.tensor([700, 700])
    zt = add_noise(ac, x0, eps, t)
    z, x0_hat = ddim_step(zt, eps, float(ac[700]), 1.0)
    torch.testing.assert_close(z, x0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(x0_hat, x0, atol=1e-5, rtol=1e-5)
    # eta = 0 between two levels: the deterministic DDIM update keeps the same (x0, eps) pair
    z2, _ = ddim_step(zt, eps, float(ac[700]), float(ac[300]))
    torch.testing.assert_close(z2, add_noise(ac, x0, eps, torch.tensor([300, 300])), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="noise"):
        ddim_step(zt, eps, float(ac[700]), float(ac[300]), eta=1.0)
    assert ddim_timesteps(4) == [999, 666, 333, 0]


def test_multi_cfg_reduces_to_cfg():
    g = torch.Generator().manual_seed(1)
    eu, ey, et = (torch.randn(1, 4, 8, 8, generator=g) for _ in range(3))
    torch.testing.assert_close(multi_cfg(eu, ey, et, 7.5, 0.0), eu + 7.5 * (ey - eu))
    torch.testing.assert_close(multi_cfg(eu, ey, et, 0.0, 0.0), eu)
    m = torch.zeros(1, 1, 8, 8)
    m[..., :4] = 1
    out = multi_cfg(eu, ey, et, 1.0, 1.0, m)
    torch.testing.assert_close(out[..., :4], et[..., :4] + ey[..., :4] - eu[..., :4])
    torch.testing.assert_close(out[..., 4:], ey[..., 4:])


def test_view_suffixes():
    assert [view_suffix(a) for a in (0, 90, 180, 270, -30)] == [
        ", front view",
        ", side view",
        ", back view",
        ", side view",
        ", front view",
    ]


@pytest.fixture(scope="module")
def sphere():
    m = trimesh.creation.icosphere(2)
    return load_mesh((m.vertices, m.faces), texture_size=32)


@pytest.fixture(scope="module")
def textures():
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 32), indexing="ij")
    base = torch.stack(
        [0.5 + 0.4 * torch.sin(6 * xx), 0.5 + 0.4 * torch.cos(5 * yy), 0.3 + 0.4 * xx * yy], -1
    )
    return torch.stack([base, base[..., [2, 0, 1]]])


def test_texture_mixture_prior_is_the_posterior_mix(sphere, textures):
    prior = TextureMixturePrior(sphere, textures)
    c2w, K, _ = camera_ring(1, size=16)
    renders = prior.renders(c2w[0], K[0], 16, 16)
    assert renders.shape == (2, 3, 16, 16)
    t = torch.tensor([400])
    z = add_noise(prior.alphas_cumprod, 2 * renders[:1] - 1, torch.randn(1, 3, 16, 16), t)
    eps = prior.predict_noise(z, t, prior.embed_prompts(["x"]), c2w=c2w, K=K)
    want = _mixture_eps(z, t, prior.alphas_cumprod, 2 * renders - 1, torch.zeros(1, 2), 0.0)
    torch.testing.assert_close(eps, want)
    with pytest.raises(ValueError, match="c2w"):
        prior.predict_noise(z, t, prior.embed_prompts(["x"]))


def test_shared_views_add_the_other_views_evidence(sphere, textures):
    """TextureMixturePrior.shared_views: a view's posterior adds λ times the per-texture
    log-likelihoods recorded for the views before it (λ = 1: the joint posterior of one texture
    seen by all the views); the bank's ``exclude`` leaves one view out; nothing is shared after."""
    from raysplat.guidance.analytic import _mixture_logits

    prior = TextureMixturePrior(sphere, textures)
    c2w, K, _ = camera_ring(3, size=16)
    g = torch.Generator().manual_seed(0)
    t = torch.tensor([300])
    renders = [2 * prior.renders(c2w[i], K[i], 16, 16) - 1 for i in range(3)]
    z = [
        add_noise(
            prior.alphas_cumprod, renders[i][i % 2 : i % 2 + 1], torch.randn(1, 3, 16, 16, generator=g), t
        )
        for i in range(3)
    ]
    cond = prior.embed_prompts(["x"])
    ell = [_mixture_logits(z[i], t, prior.alphas_cumprod, renders[i], 0.0) for i in range(3)]
    for lam in (1.0, 0.5):
        bank = KVBank(lam)
        with prior.shared_views(bank) as names:
            assert names == ["texture_posterior"]
            e0 = prior.predict_noise(z[0], t, cond, c2w=c2w[:1], K=K[:1])
            e1 = prior.predict_noise(z[1], t, cond, c2w=c2w[1:2], K=K[1:2])
            e2 = prior.predict_noise(z[2], t, cond, c2w=c2w[2:3], K=K[2:3])
            bank.recording, bank.exclude = False, 1
            e2_without_1 = prior.predict_noise(z[2], t, cond, c2w=c2w[2:3], K=K[2:3])
        ac = prior.alphas_cumprod
        torch.testing.assert_close(e0, _mixture_eps(z[0], t, ac, renders[0], torch.zeros(1, 2), 0.0))
        torch.testing.assert_close(e1, _mixture_eps(z[1], t, ac, renders[1], lam * ell[0], 0.0))
        torch.testing.assert_close(e2, _mixture_eps(z[2], t, ac, renders[2], lam * (ell[0] + ell[1]), 0.0))
        torch.testing.assert_close(e2_without_1, _mixture_eps(z[2], t, ac, renders[2], lam * ell[0], 0.0))
        assert len(bank.store["texture_posterior"]) == 3  # not recording: the 4th call added nothing
    plain = prior.predict_noise(z[2], t, cond, c2w=c2w[2:3], K=K[2:3])
    torch.testing.assert_close(
        plain, _mixture_eps(z[2], t, prior.alphas_cumprod, renders[2], torch.zeros(1, 2), 0.0)
    )


def _view_modes(prior, r, size):
    """Each final view's nearest known texture (by PSNR on its visible pixels)."""
    modes = []
    for i in range(r.views.shape[0]):
        rend = prior.renders(r.c2w[i], r.K[i], size, size)
        vis = r.buffers.visible[i]
        err = [float(((r.views[i] - x)[:, vis] ** 2).mean()) for x in rend]
        modes.append(min(range(len(err)), key=err.__getitem__))
    return modes


def test_texgen_lands_on_one_texture_and_beats_independent_views(sphere, textures):
    """TexGen settles every view on the same known texture, with far higher cross-view
    consistency and lower view-seam energy than per-view generation; the sequential baseline
    is also far more consistent than independent views."""
    from raysplat.texgen.quality import consistency_psnr, seam_energy

    prior = TextureMixturePrior(sphere, textures)
    kw = dict(views=4, steps=8, image_size=24, texture_size=32, seed=0)
    cons, seam = {}, {}
    for method in ("texgen", "sequential", "independent"):
        r = generate_texture(prior, sphere, "x", method=method, **kw)
        cons[method] = consistency_psnr(r.views, r.buffers, 32)
        seam[method] = seam_energy(r.texture, sphere, r.views, r.buffers)["view"]
        if method == "texgen":
            assert r.texture.shape == (32, 32, 3) and r.views.shape == (4, 3, 24, 24)
            assert r.info["t2gr_coverage_mean"] > 0.9 and r.info["noise"] == "uv"
            assert len(set(_view_modes(prior, r, 24))) == 1
        if method == "independent":
            assert r.info["noise"] == "view"
            assert len(set(_view_modes(prior, r, 24))) > 1
    assert cons["texgen"] > cons["independent"] + 15 and cons["sequential"] > cons["independent"] + 15
    assert seam["texgen"] < seam["independent"] / 10


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return tiny_stable_diffusion(tmp_path_factory.mktemp("sd") / "tiny", seed=0)


@pytest.fixture(scope="module")
def tiny(tiny_dir):
    return StableDiffusionPrior.from_pretrained(tiny_dir)


def test_controlnet_changes_the_prediction_and_is_optional(tiny, tiny_dir):
    assert tiny.accepts_control and (tiny_dir / "controlnet" / "config.json").is_file()
    g = torch.Generator().manual_seed(0)
    z = torch.randn(1, 4, 8, 8, generator=g)
    cond = tiny.embed_prompts(["a"])
    t = torch.tensor([500])
    base = tiny.predict_noise(z, t, cond)
    ctl = tiny.predict_noise(z, t, cond, control=torch.rand(1, 3, 64, 64, generator=g))
    assert float((base - ctl).abs().max()) > 1e-4
    with pytest.raises(ValueError, match="control"):
        tiny.predict_noise(z, t, cond, control=torch.rand(1, 3, 32, 32))
    plain = StableDiffusionPrior(tiny.unet, tiny.vae, tiny.text_encoder, tiny.tokenizer, tiny.alphas_cumprod)
    assert not plain.accepts_control
    with pytest.raises(ValueError, match="no ControlNet"):
        plain.predict_noise(z, t, cond, control=torch.rand(1, 3, 64, 64))
    with pytest.raises(ValueError, match="controlnet"):
        StableDiffusionPrior.from_pretrained(tiny_dir, controlnet=tiny_dir / "tokenizer")


def test_kv_sharing_processors(tiny):
    unet = tiny.unet
    before = dict(unet.attn_processors)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 4, 8, 8, generator=g)
    cond = tiny.embed_prompts(["a", "b"])
    t = torch.tensor([500, 500])
    plain = tiny.predict_noise(z[:1], t[:1], cond[:1])
    bank = KVBank(0.5)
    with shared_attention(unet, bank) as names:
        assert names and all(n.endswith("attn1.processor") for n in names)
        first = tiny.predict_noise(z[:1], t[:1], cond[:1])  # no references yet: the plain UNet
        second = tiny.predict_noise(z[1:], t[1:], cond[1:])  # attends to the first view too
        bank.clear()
        bank.recording = False
        alone = tiny.predict_noise(z[1:], t[1:], cond[1:])
    torch.testing.assert_close(first, plain, atol=1e-5, rtol=1e-5)
    assert float((second - alone).abs().max()) > 1e-5
    assert {k: type(v) for k, v in unet.attn_processors.items()} == {k: type(v) for k, v in before.items()}
    with pytest.raises(ValueError, match="kv_share"):
        KVBank(1.5)


def test_end_to_end_tiny_cli_writes_loadable_glb(tiny_dir, tmp_path, capsys):
    mesh_path = tmp_path / "sphere.obj"
    trimesh.creation.icosphere(1).export(mesh_path)
    out = tmp_path / "out"
    argv = [
        "texture",
        str(mesh_path),
        "a red ball",
        "--prior",
        str(tiny_dir),
        "--views",
        "2",
        "--steps",
        "2",
        "--texture-size",
        "32",
        "--frames",
        "2",
        "--negative-prompt",
        "blurry",
        "--out",
        str(out),
        "-q",
    ]
    assert cli.main(argv) == 0
    assert "texture (texgen)" in capsys.readouterr().out
    m = json.loads((out / "metrics.json").read_text())
    assert m["psnr"] is None and m["ssim"] is None and m["kv_shared_layers"] > 0
    assert m["negative_prompt"] == "blurry" and m["prompts"] == [
        "a red ball, front view",
        "a red ball, back view",
    ]
    for f in (
        "textured.glb",
        "textured.obj",
        "textured.mtl",
        "textured.png",
        "video/turntable.gif",
        "video/turntable.mp4",
    ):
        assert (out / f).is_file(), f
    loaded = trimesh.load(out / "textured.glb", force="mesh")
    assert loaded.visual.material.baseColorTexture.size == (32, 32)
    obj = trimesh.load(out / "textured.obj", force="mesh")
    assert len(obj.faces) == len(loaded.faces) and obj.visual.uv is not None
    assert not any(p.name.startswith(".out.partial") for p in tmp_path.iterdir())


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_prior_in_half_precision_gives_the_fp32_texture(tiny_dir, tmp_path, precision):
    """``precision`` loads the prior's networks in bf16 / fp16 (diffusers' torch_dtype); sampling
    and baking stay fp32, so the texture stays close to fp32's (the CLI's ``--precision``)."""
    from PIL import Image
    from raysplat.texgen.run import texture_mesh

    mesh_path = tmp_path / "sphere.obj"
    trimesh.creation.icosphere(1).export(mesh_path)
    cfg = TexGenConfig(views=2, steps=2, texture_size=32)
    pngs = {}
    for prec in ("fp32", precision):
        m = texture_mesh(
            mesh_path,
            "a red ball",
            str(tiny_dir),
            tmp_path / prec,
            cfg,
            frames=1,
            progress=False,
            precision=prec,
        )
        assert m["precision"] == prec
        pngs[prec] = np.asarray(Image.open(tmp_path / prec / "textured.png"), np.float64) / 255
    mse = float(((pngs["fp32"] - pngs[precision]) ** 2).mean())
    assert mse == 0 or -10 * math.log10(mse) > 30, mse
    with pytest.raises(ValueError, match="from_pretrained"):
        texture_mesh(
            mesh_path,
            "x",
            StableDiffusionPrior.from_pretrained(tiny_dir),
            tmp_path / "no",
            cfg,
            precision=precision,
        )
    assert not (tmp_path / "no").exists()


def test_mesh_uvs_are_kept(tmp_path):
    m = trimesh.creation.icosphere(1)
    uv = np.stack(
        [np.arctan2(m.vertices[:, 0], m.vertices[:, 2]) / (2 * math.pi) + 0.5, m.vertices[:, 1] * 0.5 + 0.5],
        1,
    )
    mesh = load_mesh((m.vertices, m.faces, uv))
    assert mesh.had_uv and torch.allclose(mesh.uv.double(), torch.from_numpy(uv))
    assert not load_mesh((m.vertices, m.faces)).had_uv


def _bad_meshes(tmp_path):
    nan = trimesh.creation.icosphere(1)
    v = nan.vertices.copy()
    v[0, 0] = np.nan
    (tmp_path / "nan.obj").write_text(
        "\n".join(
            [f"v {a} {b} {c}" for a, b, c in v] + [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in nan.faces]
        )
    )
    (tmp_path / "nofaces.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n")
    # three triangles on one edge
    (tmp_path / "nonmanifold.obj").write_text(
        "v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 -1 0\nv 0 0 1\nf 1 2 3\nf 2 1 4\nf 1 2 5\n"
    )
    return {
        "nan.obj": "NaN",
        "nofaces.obj": "no faces",
        "nonmanifold.obj": "non-manifold",
    }


def test_bad_input_errors_write_nothing(tmp_path, capsys, tiny_dir):
    good = tmp_path / "good.obj"
    trimesh.creation.icosphere(1).export(good)
    cases = [
        ([str(tmp_path / name), "p", "--prior", str(tiny_dir)], msg)
        for name, msg in _bad_meshes(tmp_path).items()
    ]
    cases += [
        ([str(good), "p", "--prior", str(tiny_dir), "--texture-size", "100"], "power of two"),
        ([str(good), "p", "--prior", str(tmp_path / "missing")], "not a directory"),
        ([str(tmp_path / "absent.obj"), "p", "--prior", "tiny"], "does not exist"),
        ([str(good), "p", "--prior", str(tiny_dir), "--set", "bogus=1"], "unknown field"),
        ([str(good), "p", "--prior", str(tiny_dir), "--device", "gpu"], "device"),
        ([str(good), "", "--prior", str(tiny_dir)], "prompt"),
    ]
    for i, (args, msg) in enumerate(cases):
        out = tmp_path / f"out{i}"
        assert cli.main(["texture", *args, "--out", str(out), "-q"]) == 2, args
        err = capsys.readouterr().err
        assert msg in err, (args, err)
        assert not out.exists(), args
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]
    with pytest.raises(ValueError, match="method"):
        TexGenConfig(method="nope").validate()
