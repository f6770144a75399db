"""raysplat.text3d: CPU end to end with the tiny Stable Diffusion and the analytic priors (NeRF
and 3DGS, SDS and VSD), every promised output, exact resume, cameras, mesh export, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from raysplat.guidance import GaussianMixturePrior, RenderedMeshPrior
from raysplat.text3d import Text3DConfig, Trainer, marching_tetrahedra, sample_cameras, view_suffix
from raysplat.training import load_checkpoint

pytest.importorskip("diffusers")

TINY = {
    "render_size": 16,
    "eval_size": 16,
    "eval_views": 2,
    "n_levels": 4,
    "log2_table": 12,
    "max_res": 64,
    "hidden": 16,
    "grid_resolution": 16,
    "n_gaussians": 200,
    "mesh_resolution": 24,
    "mesh_threshold": 1.0,
}


def _config(**kw):
    return Text3DConfig.from_dict({**TINY, **kw})


@pytest.mark.parametrize(("rep", "method"), [("nerf", "sds"), ("gs", "vsd")])
def test_tiny_sd_end_to_end(rep, method, tmp_path):
    trainer = Trainer(
        "tiny",
        "a ceramic mug",
        _config(
            steps=2,
            representation=rep,
            method=method,
            shading="random",
            n_particles=2 if method == "vsd" else 1,
        ),
    )
    m = trainer.run(tmp_path / "run", frames=2, progress=False)
    out = tmp_path / "run"
    assert (out / "checkpoint.pt").is_file()
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["steps"] == 2 and saved["method"] == "text3d" and saved["psnr"] is None and m["steps"] == 2
    assert saved["distill_method"] == method and saved["representation"] == rep
    assert (out / "video" / "turntable.gif").stat().st_size > 0
    assert (out / "video" / "turntable.mp4").stat().st_size > 0
    if rep == "nerf":
        import trimesh

        assert trimesh.load(out / "mesh.glb", force="mesh") is not None
    else:
        from raysplat.gs.ply import load_ply

        assert len(load_ply(out / "gaussians.ply")) == 200 and (out / "gaussians_1.ply").is_file()
    # any checkpoint renders through the shared loader (no prior needed)
    again = load_checkpoint(out / "checkpoint.pt")
    c2w, K, w, h = again.camera_path("turntable", 2)
    img = again.render(c2w, K, w, h)
    assert img.shape == (2, 16, 16, 3) and 0 <= img.min() and img.max() <= 1
    assert torch.equal(img, trainer.render(c2w, K, w, h))


def test_resume_is_exact(tmp_path):
    prior = GaussianMixturePrior(size=16)
    cfg = _config(steps=4, prior="mixture:disc", background="random", method="vsd")
    full = Trainer(prior, "disc", cfg)
    full.train(progress=False)
    half = Trainer(prior, "disc", cfg)
    half.train(steps=2, progress=False)
    half.save_checkpoint(tmp_path / "checkpoint.pt")
    resumed = Trainer.load_checkpoint(tmp_path / "checkpoint.pt", prior)
    resumed.train(progress=False)
    assert resumed.step == 4
    for (n, a), (_, b) in zip(
        full.particles.state_dict().items(), resumed.particles.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), n
    for a, b in zip(full.phi.parameters(), resumed.phi.parameters(), strict=True):
        assert torch.equal(a, b)


def test_mesh_prior_scores_held_out_views(tmp_path):
    prior = RenderedMeshPrior("sample")
    trainer = Trainer(prior, "mesh", _config(steps=3, background="white"))
    trainer.train(progress=False)
    ev = trainer.evaluate()
    assert len(ev["views"]) == 2 and 0 < ev["psnr"] < 60
    assert not trainer._view_dependent()  # analytic priors: prompts are names


def test_cameras_look_at_origin_with_y_up():
    cfg = Text3DConfig()
    c2w, K, az, eye = sample_cameras(cfg, 256, 64, torch.Generator().manual_seed(0))
    dist = eye.norm(dim=-1)
    assert dist.min() >= 1.5 - 1e-5 and dist.max() <= 2.0 + 1e-5
    elev = torch.rad2deg(torch.asin(eye[:, 1] / dist))
    assert elev.min() >= -10 - 1e-3 and elev.max() <= 45 + 1e-3
    forward = -c2w[:, :3, 2]
    assert torch.allclose(forward, -eye / dist[:, None], atol=1e-5)  # looking at the origin
    assert (c2w[:, 1, 1] > 0).all()  # camera up has a +y component
    fovy = torch.rad2deg(2 * torch.atan(32 / K[:, 1, 1]))
    assert fovy.min() >= 40 - 1e-3 and fovy.max() <= 70 + 1e-3
    assert (
        view_suffix(10) == ", front view"
        and view_suffix(180) == ", back view"
        and view_suffix(-90) == ", side view"
    )


def test_marching_tetrahedra_sphere():
    import trimesh

    g = np.linspace(-1, 1, 24)
    X, Y, Z = np.meshgrid(g, g, g, indexing="ij")
    v, f = marching_tetrahedra(0.6 - np.sqrt(X**2 + Y**2 + Z**2), 0.0, (-1, -1, -1), (1, 1, 1))
    mesh = trimesh.Trimesh(v, f)
    assert mesh.is_watertight
    assert abs(mesh.volume - 4 / 3 * np.pi * 0.6**3) < 0.03  # positive: faces point outwards
    with pytest.raises(ValueError, match="values"):
        marching_tetrahedra(np.zeros((2, 2)), 0.0, (0, 0), (1, 1))


def test_config_errors():
    with pytest.raises(ValueError, match="method"):
        Text3DConfig(method="dds")
    with pytest.raises(ValueError, match="background"):
        Text3DConfig(background="green")
    with pytest.raises(ValueError, match="fovy_range"):
        Text3DConfig(fovy_range=(70, 40))
    with pytest.raises(ValueError, match="prompt 'cat' is not a target"):
        Trainer(GaussianMixturePrior(size=8), "cat", _config(steps=1))


def test_cli_text_to_3d(tmp_path, capsys):
    from raysplat.cli import main

    out = tmp_path / "cli"
    args = ["text-to-3d", "--prior", "mixture:disc", "--steps", "2", "--frames", "1", "--out", str(out), "-q"]
    sets = [x for k, v in TINY.items() for x in ("--set", f"{k}={v}")]
    assert main(args + sets) == 0
    assert (out / "checkpoint.pt").is_file() and (out / "mesh.glb").is_file()
    assert (
        main(
            [
                "text-to-3d",
                "cat",
                "--prior",
                "mixture:shapes",
                "--steps",
                "1",
                "--out",
                str(tmp_path / "x"),
                "-q",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a target" in err[0]
    assert main(["text-to-3d", "x", "--prior", str(tmp_path), "--out", str(tmp_path / "y")]) == 2
    assert "not a diffusers Stable Diffusion layout" in capsys.readouterr().err


def test_restore_loads_the_prior_lazily(tmp_path):
    cfg = _config(steps=2, method="vsd", background="white")
    trainer = Trainer("mixture:disc", "disc", cfg)
    trainer.train(progress=False)
    trainer.save_checkpoint(tmp_path / "ck.pt")
    again = load_checkpoint(tmp_path / "ck.pt")
    assert again._prior is None  # rendering needs no prior
    again.render(*again.camera_path("turntable", 1)[:2], 16, 16)
    assert again._prior is None
    again.train(steps=3, progress=False)  # training loads it from the spec, with ε_φ's state
    assert again.step == 3 and again._prior is not None and again.phi is not None


def test_vsd_on_camera_aware_prior_with_camera_dropout():
    """Camera dropout zeroes ε_φ's camera input only: the mesh prior still sees the real view."""
    cfg = _config(steps=6, method="vsd", background="white", camera_dropout=1.0, score="residual")
    trainer = Trainer(RenderedMeshPrior("sample"), "mesh", cfg)
    trainer.train(progress=False)
    assert trainer.step == 6


def test_orientation_and_opacity_regularisers():
    prior = RenderedMeshPrior("sample")
    cfg = _config(steps=2, background="white", lambda_orient=1.0, lambda_sparsity=0.1, lambda_opaque=0.1)
    trainer = Trainer(prior, "mesh", cfg)
    trainer.train(progress=False)
    loss = trainer.particles[0].orient_loss
    assert loss is not None and loss.requires_grad and torch.isfinite(loss) and loss.item() >= 0


def test_proposal_sampler_nerf(tmp_path):
    """``sampler="proposal"``: proposal fields in the optimiser, trained by the interlevel loss, the
    orientation loss on the dense samples, resume, and the CLI's ``--set``."""
    prior = RenderedMeshPrior("sample")
    cfg = _config(
        steps=3,
        background="white",
        sampler="proposal",
        prop_samples=[16],
        num_samples=8,
        lambda_orient=1.0,
        prior="mesh:sample",
    )
    trainer = Trainer(prior, "mesh", cfg)
    p = trainer.particles[0]
    before = [q.detach().clone() for q in p.sampler.parameters()]
    in_opt = {id(q) for g in trainer.optimizers[0].param_groups for q in g["params"]}
    assert before and all(id(q) in in_opt for q in p.sampler.parameters())
    trainer.train(progress=False)
    assert p.aux_loss is not None and torch.isfinite(p.aux_loss)
    assert p.orient_loss is not None and torch.isfinite(p.orient_loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, p.sampler.parameters(), strict=True))
    ev = trainer.evaluate()
    assert 0 < ev["psnr"] < 60
    trainer.save_checkpoint(tmp_path / "ck.pt")
    again = load_checkpoint(tmp_path / "ck.pt", prior)
    assert again.config.sampler == "proposal" and again.config.prop_samples == (16,)
    with pytest.raises(ValueError, match="sampler"):
        Text3DConfig(sampler="pronerf")
    with pytest.raises(ValueError, match="prop_samples"):
        Text3DConfig(prop_samples=[0])
    from raysplat.cli import main

    out = tmp_path / "cli"
    sets = [x for k, v in TINY.items() for x in ("--set", f"{k}={v}")]
    sets += ["--set", "sampler=proposal", "--set", "prop_samples=[16]", "--set", "num_samples=8"]
    args = ["text-to-3d", "--prior", "mesh:sample", "--steps", "2", "--frames", "1", "--out", str(out), "-q"]
    assert main(args + sets) == 0
    assert load_checkpoint(out / "checkpoint.pt").config.sampler == "proposal"


def test_gs_densification_and_exact_resume(tmp_path):
    """``densify``: the 3DGS trainer's DensityControl clones / splits / prunes the Gaussians of a
    text-to-3D particle, the optimizer follows, and a densified checkpoint resumes exactly."""
    prior = RenderedMeshPrior("sample")
    dens = {
        "refine_start": 2,
        "refine_every": 2,
        "grow_grad2d": 1e-6,
        "prune_opa": 0.09,
        "max_gaussians": 600,
    }
    cfg = _config(steps=6, representation="gs", background="white", densify=dens)
    assert cfg.densify.refine_every == 2 and cfg.densify.reset_every == 0  # text3d's defaults below
    full = Trainer(prior, "mesh", cfg)
    full.train(progress=False)
    model = full.particles[0].model
    n = len(model)
    assert n != 200 and n <= 600
    opt_params = {id(q) for g in full.optimizers[0].param_groups for q in g["params"]}
    assert all(id(p) in opt_params for p in model.params.values())
    assert all(v.shape[0] == n for v in full.particles[0].density.state_dict().values())
    half = Trainer(prior, "mesh", cfg)
    half.train(steps=5, progress=False)
    assert len(half.particles[0].model) != 200  # the checkpoint holds a densified particle
    half.save_checkpoint(tmp_path / "ck.pt")
    resumed = Trainer.load_checkpoint(tmp_path / "ck.pt", prior)
    resumed.train(progress=False)
    for (k, a), (_, b) in zip(
        full.particles.state_dict().items(), resumed.particles.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), k
    off = Trainer(prior, "mesh", _config(steps=3, representation="gs", background="white"))
    off.train(progress=False)
    assert len(off.particles[0].model) == 200
    with pytest.raises(ValueError, match="unknown DensifyConfig key"):
        Text3DConfig(representation="gs", densify={"grow": 1})
    with pytest.raises(ValueError, match="densify applies to representation='gs'"):
        Text3DConfig(densify={})
