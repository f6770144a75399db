"""NeRDF: the checks of algorithms.md section 3.7 (3, 5, 6; 1, 2, 4 are in test_distribution.py),
online view sampling, and a short distillation from a tiny teacher (every output, resume, CLI)."""

from __future__ import annotations

import json
import math

import pytest
import raysplat as rs
import torch
from raysplat.cli import main
from raysplat.datasets import make_scene
from raysplat.nerdf import (
    NerdfConfig,
    Trainer,
    input_dim,
    normalized_sigma_loss,
    random_pose,
    ray_input,
    real_sh,
)
from raysplat.nerf import NerfConfig, sh_encode
from raysplat.nerf import Trainer as NerfTrainer
from raysplat.nerf.trainer import SceneInfo
from raysplat.reference.distribution import basis
from torch.testing import assert_close

TEACHER = dict(
    n_levels=4, log2_table=12, max_res=64, hidden=16, grid_resolution=16, batch_rays=256,
    target_samples=1 << 12, eval_views=1, warmup_steps=5,
)  # fmt: skip
STUDENT = dict(
    width=32, depth=4, n_samples=16, n_samples_test=16, batch_rays=128, eval_views=1, lr=3e-3, encoding="pe"
)


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    return make_scene(tmp_path_factory.mktemp("nerdf") / "scene", "blender", size=24, views=12, seed=0)


@pytest.fixture(scope="module")
def teacher(scene_dir, tmp_path_factory):
    t = NerfTrainer(str(scene_dir), NerfConfig(sampler="occgrid", steps=40, **TEACHER))
    t.train(progress=False)
    path = tmp_path_factory.mktemp("teacher") / "checkpoint.pt"
    t.save_checkpoint(path)
    return path


def test_input_width_and_sh():
    """section 3.7 (3): 16 * 3 * 21 + 63 + 64 = 1135; SH degree 8 has 64 terms, Y_0^0."""
    assert input_dim() == 1135
    g = torch.Generator().manual_seed(0)
    x = ray_input(
        torch.randn(5, 3, generator=g),
        torch.randn(5, 3, generator=g),
        torch.randn(5, 3, generator=g),
        2.0,
        6.0,
    )
    assert x.shape == (5, 1135)
    d = torch.nn.functional.normalize(torch.randn(200, 3, generator=g, dtype=torch.float64), dim=-1)
    y = real_sh(d)
    assert y.shape == (200, 64)
    assert_close(y[:, 0], torch.full((200,), 0.28209479177387814, dtype=torch.float64))
    assert_close(real_sh(d, 4), sh_encode(d, 4))
    # orthonormal on the sphere (a Lebedev-free check: Monte Carlo with a loose tolerance)
    dd = torch.nn.functional.normalize(torch.randn(200_000, 3, generator=g, dtype=torch.float64), dim=-1)
    yy = real_sh(dd)
    gram = yy.T @ yy * (4 * math.pi / dd.shape[0])
    assert float((gram - torch.eye(64, dtype=torch.float64)).abs().max()) < 0.05


def test_sigma_loss_is_scale_invariant():
    """section 3.7 (6)."""
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(8, 16, generator=g), torch.rand(8, 16, generator=g)
    base = normalized_sigma_loss(s, t)
    for k in (0.01, 3.0, 1e4):
        assert_close(normalized_sigma_loss(k * s, t), base)
        assert_close(normalized_sigma_loss(s, k * t), base)
    assert float(normalized_sigma_loss(t, 5.0 * t)) < 1e-12


@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_distillation_loss_is_zero_at_the_teacher(backend):
    """section 3.7 (5): a teacher whose sigma and colour on the sample grid are the student's
    series gives zero colour and density loss (the teacher composited by rs.volume_render)."""
    g = torch.Generator().manual_seed(2)
    n, s, near, far, last = 6, 20, 2.0, 6.0, 0.5
    coeffs = torch.randn(n, 4, 24, generator=g, dtype=torch.float64) * 0.4
    taus = torch.linspace(0, 1, s, dtype=torch.float64)
    raw = torch.einsum("rck,sk->rsc", coeffs, basis(taus))
    t = near + taus * (far - near)
    t_ends = torch.cat([t[1:], t[-1:] + last]).expand(n, s)
    with rs.backend(backend):
        out = rs.render_distribution(coeffs, s, near, far, last_delta=last, return_samples=True)
        col_t, _, _, _ = rs.volume_render(t.expand(n, s), t_ends, raw[..., 0].relu(), raw[..., 1:].sigmoid())
    sigma_teacher = raw[..., 0].relu()
    loss = torch.nn.functional.mse_loss(out.colors, col_t) + 0.1 * normalized_sigma_loss(
        out.sigmas.relu(), sigma_teacher
    )
    assert float(loss) < 1e-20


def test_random_poses_stay_near_the_training_cameras():
    g = torch.Generator().manual_seed(3)
    c2w = rs.cameras.orbit((0.0, 0.0, 0.0), 4.0, 30.0, 12).float()
    K = torch.eye(3)
    info = SceneInfo(c2w, K, 8, 8, {"train": torch.arange(12)}, 2.0, 6.0, torch.zeros(6), "blender", False)
    for _ in range(5):
        p = random_pose(info, g)
        assert p.shape == (3, 4)
        assert abs(float(p[:, 3].norm()) - 4.0) < 1e-3
        assert (
            float((-p[:, 2]) @ torch.nn.functional.normalize(-p[:, 3], dim=0)) > 0.999
        )  # looks at the centre
    ff = c2w[:4].clone()
    ff[:, :3, :3] = torch.eye(3)
    ff[:, :3, 3] = torch.tensor([[0.0, 0, 0], [0.2, 0, 0], [0, 0.1, 0], [0.2, 0.1, 0.05]])
    info_ff = SceneInfo(ff, K, 8, 8, {"train": torch.arange(4)}, 1.0, 10.0, torch.zeros(6), "llff", True)
    for _ in range(5):
        p = random_pose(info_ff, g)
        assert (
            bool((p[:, 3] >= -1e-6).all()) and float(p[0, 3]) <= 0.2 + 1e-6 and float(p[2, 3]) <= 0.05 + 1e-6
        )
        assert_close(-p[:, 2], torch.tensor([0.0, 0.0, -1.0]), atol=1e-6, rtol=0)


def test_short_distillation_improves_and_writes_outputs(scene_dir, teacher, tmp_path):
    scene = rs.nerf.load_scene(scene_dir)
    s = Trainer(scene, NerdfConfig(teacher=str(teacher), steps=60, **STUDENT))
    before = s.psnr_vs_teacher()
    s.train(progress=False)
    m = s.write_outputs(tmp_path / "run", frames=2)
    assert m["psnr_vs_teacher"] > before + 3.0, (before, m["psnr_vs_teacher"])
    assert m["method"] == "nerdf" and m["steps"] == 60 and math.isfinite(m["psnr"])
    assert 0 < m["render_network_fraction"] < 1
    out = tmp_path / "run"
    assert json.loads((out / "metrics.json").read_text())["psnr_vs_teacher"] == m["psnr_vs_teacher"]
    first = scene.indices("test")[0]
    assert sorted(p.name for p in (out / "test").iterdir()) == [
        f"{first:04d}_gt.png",
        f"{first:04d}_pred.png",
    ]
    assert (out / "video" / "turntable.gif").is_file() and (
        out / "video" / "turntable.mp4"
    ).stat().st_size > 0
    # rendering needs no teacher: any method's checkpoint renders through the shared loader
    r = rs.training.load_checkpoint(out / "checkpoint.pt")
    assert r.render(r.info.c2w[:1], r.info.K[0], 8, 6).shape == (1, 6, 8, 3)


def test_resume_continues_identically(scene_dir, teacher, tmp_path):
    cfg = NerdfConfig(teacher=str(teacher), steps=6, **STUDENT)
    straight = Trainer(str(scene_dir), cfg)
    losses = [straight.train_step()["loss"] for _ in range(6)]
    half = Trainer(str(scene_dir), cfg)
    for _ in range(3):
        half.train_step()
    half.save_checkpoint(tmp_path / "ck.pt")
    resumed = Trainer.load_checkpoint(tmp_path / "ck.pt", str(scene_dir))
    assert [resumed.train_step()["loss"] for _ in range(3)] == losses[3:]
    for a, b in zip(straight.net.parameters(), resumed.net.parameters(), strict=True):
        assert torch.equal(a, b)


def test_cli_train_render_and_errors(scene_dir, teacher, tmp_path, capsys):
    out = tmp_path / "cli"
    sets = [f"--set={k}={v}" for k, v in STUDENT.items()]
    rc = main(
        [
            "train",
            "nerdf",
            str(scene_dir),
            "--teacher",
            str(teacher),
            "--steps",
            "2",
            "--out",
            str(out),
            "--frames",
            "0",
            "-q",
            *sets,
        ]
    )
    assert rc == 0 and (out / "checkpoint.pt").is_file()
    rc = main(["render", str(out / "checkpoint.pt"), "--frames", "1", "--out", str(tmp_path / "r")])
    assert rc == 0
    assert (
        main(
            [
                "train",
                "nerdf",
                str(scene_dir),
                "--teacher",
                str(tmp_path / "none.pt"),
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )
    assert "teacher" in capsys.readouterr().err
    with pytest.raises(ValueError, match="sigma_activation"):
        NerdfConfig(sigma_activation="exp")
    with pytest.raises(ValueError, match="width"):
        NerdfConfig(width=0)


HASH_STUDENT = dict(STUDENT, encoding="hashgrid", depth=2, hash_levels=4, hash_log2_table=12, hash_max_res=64)


def test_hashgrid_student_improves_resumes_and_renders(scene_dir, teacher, tmp_path):
    scene = rs.nerf.load_scene(scene_dir)
    s = Trainer(scene, NerdfConfig(teacher=str(teacher), steps=60, **HASH_STUDENT))
    before = s.psnr_vs_teacher()
    s.train(progress=False)
    after = s.psnr_vs_teacher()
    assert after > before + 3.0, (before, after)
    s.save_checkpoint(tmp_path / "ck.pt")
    r = rs.training.load_checkpoint(tmp_path / "ck.pt")
    v = r.info.c2w[:1]
    assert torch.equal(r.render(v, r.info.K[0], 8, 6), s.render(v, s.info.K[0], 8, 6))
    # resume continues bit-identically
    cfg = NerdfConfig(teacher=str(teacher), steps=4, **HASH_STUDENT)
    straight = Trainer(str(scene_dir), cfg)
    losses = [straight.train_step()["loss"] for _ in range(4)]
    half = Trainer(str(scene_dir), cfg)
    for _ in range(2):
        half.train_step()
    half.save_checkpoint(tmp_path / "half.pt")
    resumed = Trainer.load_checkpoint(tmp_path / "half.pt", str(scene_dir))
    assert [resumed.train_step()["loss"] for _ in range(2)] == losses[2:]


def test_encoding_is_validated():
    with pytest.raises(ValueError, match="encoding must be 'pe' or 'hashgrid'"):
        NerdfConfig(encoding="fourier").validate()
    with pytest.raises(ValueError, match="depth must be a positive integer"):
        NerdfConfig(depth=0).validate()


def test_forward_facing_distillation_in_ndc(tmp_path):
    """An LLFF (forward-facing, NDC) teacher: the student works in the teacher's NDC box, the
    online poses stay inside the camera envelope, and distillation improves on the teacher."""
    data = make_scene(tmp_path / "llff", "llff", size=24, views=6, seed=2)
    t = NerfTrainer(str(data), NerfConfig(sampler="occgrid", steps=30, **TEACHER))
    t.train(progress=False)
    t.save_checkpoint(tmp_path / "teacher.pt")
    s = Trainer(str(data), NerdfConfig(teacher=str(tmp_path / "teacher.pt"), steps=60, **HASH_STUDENT))
    assert s.info.forward_facing and (s.near, s.far) == (0.0, 1.0)
    before = s.psnr_vs_teacher()
    s.train(progress=False)
    after = s.psnr_vs_teacher()
    assert after > before + 3.0, (before, after)
