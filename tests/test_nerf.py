"""NeRF: field shapes / gradients, samplers'
intervals, a short training run, exact resume, metrics and the train / render CLI."""

from __future__ import annotations

import json
import math

import pytest
import torch
from raysplat.cli import main
from raysplat.datasets import make_scene
from raysplat.metrics import psnr, ssim
from raysplat.nerf import (
    NerfConfig,
    RadianceField,
    Trainer,
    contract,
    sh_encode,
)
from raysplat.nerf.samplers import proposal_requires_grad

#: small, fast settings for the tiny test scene
TINY = dict(
    n_levels=8, log2_table=14, max_res=128, hidden=32, grid_resolution=32, batch_rays=512,
    target_samples=1 << 14, prop_samples=(32,), num_samples=16, n_coarse=16, n_fine=16,
    eval_views=2, warmup_steps=20,
)  # fmt: skip


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    return make_scene(tmp_path_factory.mktemp("nerf") / "scene", "blender", size=32, views=20, seed=0)


@pytest.fixture(scope="module")
def scene(scene_dir):
    from raysplat.nerf import load_scene

    return load_scene(scene_dir)


# ---------------------------------------------------------------- field
def test_field_shapes_and_gradients(gen):
    f = RadianceField([-1, -1, -1, 1, 1, 1], n_levels=4, log2_table=12, max_res=64, hidden=16, generator=gen)
    x = torch.rand(50, 3, generator=gen) * 2.4 - 1.2  # some outside the box
    d = torch.nn.functional.normalize(torch.randn(50, 3, generator=gen), dim=-1)
    sigma, rgb = f(x, d)
    assert sigma.shape == (50,) and rgb.shape == (50, 3)
    assert bool((sigma >= 0).all()) and bool(((rgb > 0) & (rgb < 1)).all())
    outside = (x.abs() > 1).any(-1)
    assert bool((sigma[outside] == 0).all())
    torch.testing.assert_close(f.density(x), sigma)
    (sigma.sum() + rgb.sum()).backward()
    for name, p in f.named_parameters():
        assert p.grad is not None and bool(torch.isfinite(p.grad).all()), name
    assert float(f.grid.table.grad.abs().sum()) > 0


def test_sh_and_contraction():
    d = torch.nn.functional.normalize(torch.randn(20000, 3), dim=-1)
    sh = sh_encode(d, 4)
    assert sh.shape == (20000, 16)
    gram = sh.T @ sh / d.shape[0] * 4 * math.pi  # orthonormal on the sphere
    torch.testing.assert_close(gram, torch.eye(16), atol=0.1, rtol=0)
    x = torch.tensor([[0.5, -0.2, 0.1], [3.0, 0.0, 0.0], [-100.0, 50.0, 1.0]])
    for kind in ("linf", "l2"):
        y = contract(x, kind)
        torch.testing.assert_close(y[0], x[0])
        assert bool((y.abs().amax(-1) < 2).all())
    torch.testing.assert_close(contract(x, "linf")[1], torch.tensor([5 / 3, 0.0, 0.0]))


# ---------------------------------------------------------------- samplers
@pytest.mark.parametrize("sampler", ["occgrid", "proposal", "hierarchical"])
def test_sampler_intervals_are_valid(scene, sampler):
    t = Trainer(scene, NerfConfig(sampler=sampler, steps=4, **TINY))
    t.train(progress=False)  # a few steps: occupancy grid filled, proposal trained a little
    rays = t.make_rays(scene.c2w[:1], scene.K[:1], torch.arange(0, 32 * 32, 7))
    out = t.sampler.render(t.field, rays, torch.ones(3), train=True, generator=t.gen, step=4)
    assert out.rgb.shape == (len(rays), 3) and out.opacity.shape == (len(rays), 1)
    assert bool(torch.isfinite(out.rgb).all())
    if sampler == "occgrid":
        ri, t0, t1 = out.packed
        assert ri.numel() > 0 and bool((ri[1:] >= ri[:-1]).all())
        assert bool((t1 > t0).all()) and bool((t0 >= rays.near - 1e-5).all()) and bool((t1 <= rays.far).all())
        same = ri[1:] == ri[:-1]
        assert bool((t0[1:][same] >= t1[:-1][same] - 1e-6).all())
    else:
        for e in out.edges:
            assert bool((e[:, 1:] >= e[:, :-1]).all())
            assert bool((e >= rays.near - 1e-5).all()) and bool((e <= rays.far + 1e-5).all())
        if sampler == "proposal":
            assert out.aux_loss is not None and out.aux_loss.requires_grad
        else:
            assert len(out.aux_rgb) == 1


def test_proposal_requires_grad_schedule():
    assert all(proposal_requires_grad(s) for s in range(0, 150))
    late = [proposal_requires_grad(s) for s in range(1000, 1060)]
    assert sum(late) == 10


# ---------------------------------------------------------------- training
def test_short_training_beats_mean_colour(scene, tmp_path):
    t = Trainer(scene, NerfConfig(sampler="occgrid", steps=150, **TINY))
    t.train(progress=False)
    ev = t.evaluate()
    assert ev["psnr"] > ev["mean_color_psnr"] + 6.0, ev
    assert 0 < ev["ssim"] <= 1
    assert [v["index"] for v in ev["views"]] == scene.indices("test")[:2].tolist()
    assert ev["render_ms_per_frame"] > 0


@pytest.mark.parametrize(
    ("sampler", "precision"), [("occgrid", "fp32"), ("proposal", "fp32"), ("occgrid", "fp16")]
)
def test_resume_continues_identically(scene, tmp_path, sampler, precision):
    cfg = dict(TINY, warmup_steps=4, batch_rays=128, target_samples=4096, grid_resolution=16)
    cfg["precision"] = precision  # fp16: the loss scaler's state resumes too
    straight = Trainer(scene, NerfConfig(sampler=sampler, steps=10, **cfg))
    losses = [straight.train_step()["loss"] for _ in range(10)]
    half = Trainer(scene, NerfConfig(sampler=sampler, steps=10, **cfg))
    for _ in range(5):
        half.train_step()
    half.save_checkpoint(tmp_path / "ck.pt")
    resumed = Trainer.load_checkpoint(tmp_path / "ck.pt", scene)
    assert resumed.step == 5
    losses2 = [resumed.train_step()["loss"] for _ in range(5)]
    assert losses2 == losses[5:]
    for (n, a), (_, b) in zip(straight.named_parameters(), resumed.named_parameters(), strict=True):
        assert torch.equal(a, b), n
    if sampler == "occgrid":
        assert torch.equal(straight.sampler.grid.occs, resumed.sampler.grid.occs)
    assert resumed.config.precision == precision
    assert straight.scaling.state_dict() == resumed.scaling.state_dict()
    assert (resumed.scaling.state_dict() is not None) == (precision == "fp16")


# ---------------------------------------------------------------- metrics
def test_psnr_ssim():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(32, 32, 3, generator=g)
    assert ssim(img, img) == pytest.approx(1.0)
    noisy = (img + 0.1 * torch.randn(img.shape, generator=g)).clamp(0, 1)
    worse = (img + 0.3 * torch.randn(img.shape, generator=g)).clamp(0, 1)
    assert 0 < ssim(worse, img) < ssim(noisy, img) < 1
    assert ssim(noisy, img) == pytest.approx(ssim(img, noisy))
    assert psnr(img * 0 + 0.5, img * 0 + 0.6) == pytest.approx(20.0)
    with pytest.raises(ValueError):
        ssim(img, img[:, :-1])


# ---------------------------------------------------------------- CLI
def test_cli_train_and_render(scene_dir, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "nerf", str(scene_dir), "--steps", "6", "--out", str(out), "--frames", "2", "-q"])
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["steps"] == 6 and m["sampler"] == "occgrid" and math.isfinite(m["psnr"])
    assert (out / "checkpoint.pt").is_file() and (out / "video" / "turntable.gif").is_file()
    assert (out / "video" / "turntable.mp4").stat().st_size > 0
    rc = main(
        [
            "render",
            str(out / "checkpoint.pt"),
            "--path",
            "spiral",
            "--frames",
            "2",
            "--out",
            str(tmp_path / "r"),
        ]
    )
    assert rc == 0 and (tmp_path / "r" / "video" / "spiral.gif").is_file()
    assert main(["train", "nerf", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "error" in capsys.readouterr().err


def test_trainer_rejects_unknown_sampler():
    with pytest.raises(ValueError, match="sampler"):
        NerfConfig(sampler="nope")


def test_prop_samples_accepts_one_int_and_names_bad_values():
    assert NerfConfig(prop_samples=32).prop_samples == (32,)
    assert NerfConfig(prop_samples=[64, 32]).prop_samples == (64, 32)
    for bad in ("x", [0], [], True):
        with pytest.raises(ValueError, match="prop_samples must be a positive integer"):
            NerfConfig(prop_samples=bad)
