"""3D Gaussian splatting training (raysplat.gs): PLY layout, cameras, density control, training,
exact resume and the ``raysplat train gs`` command."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import raysplat
import torch
from raysplat import cli
from raysplat.cameras import c2w_to_viewmat, look_at
from raysplat.datasets import load, make_scene
from raysplat.gs import (
    DensifyConfig,
    DensityControl,
    GaussianModel,
    GSConfig,
    Trainer,
    load_ply,
    save_ply,
)
from raysplat.gs.ply import ply_fields, read_ply_vertices
from raysplat.metrics import psnr, ssim


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Training runs torch's (small) ops on one thread, as the CLI does: on a loaded 2-core
    machine two OpenMP threads make each step several times slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A 32 x 32 generated Blender scene: 12 train, 2 val, 2 test views, 2000 surface points."""
    return make_scene(tmp_path_factory.mktemp("gs") / "tiny", "blender", size=32, views=12)


@pytest.fixture(scope="module")
def tiny(tiny_dir):
    return load(tiny_dir, background="none")


def random_model(n=50, degree=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    k = (degree + 1) ** 2
    return GaussianModel(
        torch.randn(n, 3, generator=g),
        torch.randn(n, 4, generator=g),
        torch.randn(n, 3, generator=g) - 3,
        torch.randn(n, generator=g),
        torch.randn(n, 1, 3, generator=g),
        torch.randn(n, k - 1, 3, generator=g),
    )


# ----------------------------------------------------------------------------------- PLY


@pytest.mark.parametrize("degree", [0, 1, 3])
def test_ply_round_trip_is_exact(tmp_path, degree):
    m = random_model(degree=degree)
    save_ply(m, tmp_path / "g.ply")
    back = load_ply(tmp_path / "g.ply")
    assert back.sh_degree == degree
    for k, v in m.params.items():
        assert torch.equal(back.params[k], v.detach()), k
    # and again: the file bytes are reproduced
    save_ply(back, tmp_path / "h.ply")
    assert (tmp_path / "g.ply").read_bytes() == (tmp_path / "h.ply").read_bytes()


def test_ply_layout_is_standard_3dgs(tmp_path):
    m = random_model(n=3, degree=3)
    save_ply(m, tmp_path / "g.ply")
    raw = (tmp_path / "g.ply").read_bytes()
    header = raw[: raw.index(b"end_header\n") + 11].decode()
    assert header.startswith("ply\nformat binary_little_endian 1.0\nelement vertex 3\n")
    names = [ln.split()[2] for ln in header.splitlines() if ln.startswith("property float ")]
    assert names == ply_fields(45)
    assert names[:9] == ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    assert names[9] == "f_rest_0" and names[53] == "f_rest_44"
    assert names[54:] == ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    v = read_ply_vertices(tmp_path / "g.ply")
    assert v.dtype.itemsize == 62 * 4 and len(raw) == len(header) + 3 * 62 * 4
    p = m.params
    # f_rest is channel-major: f_rest_{c * 15 + j} = shN[:, j, c]
    for c in range(3):
        for j in (0, 7, 14):
            assert np.array_equal(v[f"f_rest_{c * 15 + j}"], p["shN"][:, j, c].detach().numpy())
    assert np.array_equal(v["rot_0"], p["quats"][:, 0].detach().numpy())  # w first
    assert np.array_equal(v["opacity"], p["opacities"].detach().numpy())  # logit
    assert np.array_equal(v["scale_2"], p["scales"][:, 2].detach().numpy())  # log
    assert np.all(v["nx"] == 0)


def test_ply_rejects_other_files(tmp_path):
    (tmp_path / "a.ply").write_bytes(b"ply\nformat ascii 1.0\nelement vertex 0\nend_header\n")
    with pytest.raises(ValueError, match="binary_little_endian"):
        load_ply(tmp_path / "a.ply")
    hdr = b"ply\nformat binary_little_endian 1.0\nelement vertex 1\nproperty float x\nend_header\n"
    (tmp_path / "b.ply").write_bytes(hdr + b"\0" * 4)
    with pytest.raises(ValueError, match="missing"):
        load_ply(tmp_path / "b.ply")


# ----------------------------------------------------------------------------------- cameras


def test_viewmat_projects_where_generate_rays_points():
    w, h = 40, 30
    K = torch.tensor([[35.0, 0.0, 19.0], [0.0, 33.0, 16.5], [0.0, 0.0, 1.0]])
    c2w = look_at(
        torch.tensor([2.0, -3.0, 1.5]), torch.tensor([0.1, 0.2, -0.1]), torch.tensor([0.0, 0.0, 1.0])
    )
    vm = c2w_to_viewmat(c2w[None])
    # world-to-camera really is the inverse pose, with +z forward (OpenCV)
    assert torch.allclose(vm[0, :3, :3] @ c2w[:, 3] + vm[0, :3, 3], torch.zeros(3), atol=1e-5)
    for px, py in [(7, 21), (31, 4), (20, 15)]:
        pix = torch.tensor([py * w + px])
        o, d = raysplat.generate_rays(c2w, K, w, h, pixels=pix)
        point = o + 2.5 * d  # a world point seen through pixel (px, py)
        cam = vm[0, :3, :3] @ point[0] + vm[0, :3, 3]
        assert cam[2] > 0  # in front of the camera
        img, _, meta = raysplat.rasterization(
            point,
            torch.tensor([[1.0, 0.0, 0.0, 0.0]]),
            torch.full((1, 3), 0.01),
            torch.tensor([0.99]),
            torch.ones(1, 3),
            vm,
            K[None],
            w,
            h,
        )
        assert torch.allclose(meta["means2d"][0, 0], torch.tensor([px + 0.5, py + 0.5]), atol=1e-3)
        assert float(meta["depths"][0, 0]) == pytest.approx(float(cam[2]), rel=1e-5)
        flat = int(img[0, ..., 0].argmax())
        assert (flat % w, flat // w) == (px, py)


def test_scene_cameras_see_the_object(tiny):
    # the origin (object centre) projects near the image centre of every Blender camera
    vm = c2w_to_viewmat(tiny.c2w)
    cam = vm[:, :3, 3]  # world origin in camera coordinates
    assert bool((cam[:, 2] > 2.0).all())
    uv = (tiny.K @ cam[..., None])[..., 0]
    uv = uv[:, :2] / uv[:, 2:]
    assert bool(((uv - 16).abs() < 4).all())


def test_ssim_matches_conv2d_reference():
    g = torch.Generator().manual_seed(3)
    a = torch.rand(23, 37, 3, generator=g)
    b = (a + 0.1 * torch.randn(a.shape, generator=g)).clamp(0, 1)
    x = torch.arange(11, dtype=torch.float64) - 5
    k = torch.exp(-(x**2) / 4.5)
    k = k / k.sum()
    win = (k[:, None] * k[None]).float().expand(3, 1, 11, 11)
    conv = lambda t: torch.nn.functional.conv2d(t.permute(2, 0, 1)[None], win, padding=5, groups=3)  # noqa: E731
    mu1, mu2 = conv(a), conv(b)
    s1, s2, s12 = conv(a * a) - mu1**2, conv(b * b) - mu2**2, conv(a * b) - mu1 * mu2
    c1, c2 = 0.01**2, 0.03**2
    ref = ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1**2 + mu2**2 + c1) * (s1 + s2 + c2))
    assert ssim(a, b, padding="zero") == pytest.approx(float(ref.mean()), abs=1e-6)
    assert ssim(a, a, padding="zero") == pytest.approx(1.0, abs=1e-6)
    # valid windows: the interior of the same map
    assert ssim(a, b) == pytest.approx(float(ref[..., 5:-5, 5:-5].mean()), abs=1e-6)
    assert psnr(a, a) == math.inf


# ----------------------------------------------------------------------------------- density control


def _setup(n=20):
    m = random_model(n=n, degree=1)
    opts = {k: torch.optim.Adam([m.params[k]], lr=1e-2, eps=1e-15) for k in m.params}
    # one step with gradients so every Adam moment is non-zero
    loss = sum((p * (i + 1)).sin().sum() for i, p in enumerate(m.params.values()))
    loss.backward()
    for o in opts.values():
        o.step()
        o.zero_grad()
    dc = DensityControl(m, opts, DensifyConfig(), extent=1.0, generator=torch.Generator().manual_seed(0))
    return m, opts, dc


def _moments(m, opts):
    return {k: {s: v.clone() for s, v in opts[k].state[m.params[k]].items()} for k in m.params}


def _check_consistent(m, opts):
    n = len(m)
    for k, p in m.params.items():
        assert p.shape[0] == n
        assert opts[k].param_groups[0]["params"][0] is p
        st = opts[k].state[p]
        assert st["exp_avg"].shape == p.shape and st["exp_avg_sq"].shape == p.shape
        assert float(st["step"]) == 1.0


def test_duplicate_split_remove_keep_optimizer_state():
    m, opts, dc = _setup()
    before = {k: v.detach().clone() for k, v in m.params.items()}
    mom = _moments(m, opts)
    clone = torch.zeros(20, dtype=torch.bool)
    clone[[1, 5]] = True
    dc.duplicate(clone)
    _check_consistent(m, opts)
    assert len(m) == 22 and len(dc.grad2d) == 22
    for k, p in m.params.items():
        assert torch.equal(p[:20], before[k]) and torch.equal(p[20:], before[k][[1, 5]])
        st = opts[k].state[p]
        assert torch.equal(st["exp_avg"][:20], mom[k]["exp_avg"])  # carried
        assert torch.equal(st["exp_avg_sq"][:20], mom[k]["exp_avg_sq"])
        assert not st["exp_avg"][20:].any()  # fresh

    mom = _moments(m, opts)
    before = {k: v.detach().clone() for k, v in m.params.items()}
    split = torch.zeros(22, dtype=torch.bool)
    split[[0, 3, 21]] = True
    dc.split(split)
    _check_consistent(m, opts)
    assert len(m) == 22 - 3 + 6
    rest = [i for i in range(22) if i not in (0, 3, 21)]
    for k, p in m.params.items():
        st = opts[k].state[p]
        assert torch.equal(st["exp_avg"][:19], mom[k]["exp_avg"][rest])
        assert not st["exp_avg"][19:].any() and not st["exp_avg_sq"][19:].any()
    # children: scales / 1.6, other attributes copied, means sampled around the parent
    assert torch.allclose(m.params["scales"][19:22], before["scales"][[0, 3, 21]] - math.log(1.6))
    assert torch.equal(m.params["sh0"][22:25], before["sh0"][[0, 3, 21]])
    assert torch.equal(m.params["quats"][19:22], before["quats"][[0, 3, 21]])
    assert not torch.equal(m.params["means"][19:22], before["means"][[0, 3, 21]])

    mom = _moments(m, opts)
    drop = torch.zeros(25, dtype=torch.bool)
    drop[[2, 4, 24]] = True
    dc.remove(drop)
    _check_consistent(m, opts)
    keep = [i for i in range(25) if i not in (2, 4, 24)]
    for k, p in m.params.items():
        assert torch.equal(opts[k].state[p]["exp_avg_sq"], mom[k]["exp_avg_sq"][keep])

    dc.reset_opacities(0.01)
    _check_consistent(m, opts)
    assert float(m.opacities.detach().max()) <= 0.01 + 1e-6
    assert not opts["opacities"].state[m.params["opacities"]]["exp_avg"].any()
    assert opts["means"].state[m.params["means"]]["exp_avg"].any()
    # the optimizers still step the model's tensors
    m.params["means"].grad = torch.ones_like(m.params["means"])
    old = m.params["means"].detach().clone()
    opts["means"].step()
    assert not torch.equal(old, m.params["means"])


def test_grow_clones_small_and_splits_large_and_prune():
    m, opts, dc = _setup(n=6)
    with torch.no_grad():
        m.params["scales"][:] = math.log(0.001)
        m.params["scales"][[2, 3]] = math.log(0.5)  # large (> 0.01 * extent)
        m.params["opacities"][:] = 0.0
        m.params["opacities"][5] = -10.0  # transparent
    # 2D-gradient statistics in NDC units: 0, 1, 2 high -> clone 0, 1 (small), split 2 (large)
    dc.grad2d = torch.tensor([3e-4, 6e-4, 1e-3, 1e-4, 0.0, 9e-4])
    dc.count = torch.tensor([1.0, 2.0, 2.0, 1.0, 0.0, 1.0])
    cloned, split = dc.grow()
    assert (cloned, split) == (3, 1)  # 5 is transparent but high too, and small
    _check_consistent(m, opts)
    assert len(m) == 6 + 3 + 1
    assert dc.prune(step=1) == 2  # the transparent one and its clone
    _check_consistent(m, opts)


def test_grow_respects_max_gaussians():
    m, opts, dc = _setup(n=10)
    with torch.no_grad():
        m.params["scales"][:] = math.log(0.001)
        m.params["scales"][:3] = math.log(0.5)
    dc.cfg.max_gaussians = 13
    dc.grad2d = torch.linspace(1e-3, 2e-3, 10)  # all high; the largest gradients win
    dc.count = torch.ones(10)
    cloned, split = dc.grow()
    assert len(m) == 13 and cloned + split == 3
    _check_consistent(m, opts)


def test_gradient_units_are_ndc():
    # a loss linear in the pixel x of Gaussian 0 with slope s has NDC gradient s * W / 2
    m = random_model(n=3, degree=0)
    with torch.no_grad():
        m.params["means"][:] = torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.0, 0.0], [0.0, 0.1, 0.0]])
        m.params["scales"][:] = -3.0
    vm = c2w_to_viewmat(
        look_at(torch.tensor([0.0, -4.0, 0.0]), torch.zeros(3), torch.tensor([0.0, 0, 1]))[None]
    )
    K = torch.tensor([[[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]]])
    opts = {k: torch.optim.Adam([m.params[k]]) for k in m.params}
    dc = DensityControl(m, opts, DensifyConfig(), 1.0, torch.Generator())
    _, _, meta = m.render(vm, K, 64, 48)
    dc.pre_backward(meta)
    (meta["means2d"][0, 0, 0] * 1e-3 + meta["means2d"][0, 1, 1] * 2e-3).backward()
    dc._accumulate(meta)
    assert dc.grad2d[0].item() == pytest.approx(1e-3 * 32, rel=1e-5)
    assert dc.grad2d[1].item() == pytest.approx(2e-3 * 24, rel=1e-5)
    assert dc.count.tolist() == [1.0, 1.0, 1.0]


# ----------------------------------------------------------------------------------- training


def _mean_colour_psnr(tr: Trainer) -> float:
    """PSNR on the test views of the mean training colour (the trivial model to beat)."""
    gt = torch.stack([tr._target(i, tr.eval_bg) for i in tr.test_ids.tolist()])
    mean = torch.stack([tr._target(i, tr.eval_bg) for i in tr.train_ids.tolist()]).mean((0, 1, 2))
    return float(psnr(mean.expand_as(gt), gt))


def test_training_beats_mean_colour(tiny):
    tr = Trainer(tiny, GSConfig.fast(steps=300))
    assert len(tr.model) == len(tiny.points)
    tr.train(progress=False)
    ev = tr.evaluate()
    baseline = _mean_colour_psnr(tr)
    assert ev["psnr"] > baseline + 6.0, (ev["psnr"], baseline)
    assert ev["ssim"] > 0.8


def test_random_init_and_densification(tiny):
    cfg = GSConfig.fast(
        steps=200, init="random", init_random=300, sh_degree=1, sh_every=100, densify={"refine_start": 50}
    )
    cfg.densify.grow_grad2d = 5e-5
    tr = Trainer(tiny, cfg)
    assert len(tr.model) == 300 and tr.model.sh_degree == 1
    lo, hi = tiny.aabb[:3], tiny.aabb[3:]
    assert bool(((tr.model.means >= lo) & (tr.model.means <= hi)).all())
    before = tr.evaluate()["psnr"]
    tr.train(progress=False)
    ev = tr.evaluate()
    assert len(tr.model) > 300  # grew
    baseline = _mean_colour_psnr(tr)
    # beats the flat mean colour (9.97 dB here; trained 14.6 dB) and the random start (7.9 dB)
    assert ev["psnr"] > baseline + 3.0, (ev["psnr"], baseline)
    assert ev["psnr"] > before + 5.0, (ev["psnr"], before)
    assert tr.means_lr(0) == pytest.approx(1.6e-4 * tr.extent)
    assert tr.means_lr(200) == pytest.approx(1.6e-6 * tr.extent)


def _assert_same(a: Trainer, b: Trainer):
    assert a.step == b.step
    for k in a.model.params:
        assert torch.equal(a.model.params[k], b.model.params[k]), k
        sa, sb = a.optimizers[k].state_dict(), b.optimizers[k].state_dict()
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(sa["state"][0][key], sb["state"][0][key]), (k, key)
    for k in ("grad2d", "count", "radii"):
        assert torch.equal(getattr(a.density, k), getattr(b.density, k))
    assert torch.equal(a.generator.get_state(), b.generator.get_state())


def test_resume_is_bit_identical(tiny, tmp_path):
    # the resumed half contains refinements (80, 100, 120), an opacity reset (100) and SH
    # degree increases (100, 150)
    dens = {
        "refine_start": 20,
        "refine_every": 20,
        "refine_stop": 140,
        "reset_every": 100,
        "grow_grad2d": 5e-5,
    }
    cfg = GSConfig.fast(steps=160, sh_every=50, densify=dens)
    full = Trainer(tiny, cfg)
    full.train(progress=False)

    half = Trainer(tiny, cfg)
    half.train(steps=70, progress=False)
    n_half = len(half.model)
    half.save_checkpoint(tmp_path / "ck.pt")
    del half
    resumed = Trainer.load_checkpoint(tmp_path / "ck.pt", tiny)
    assert resumed.step == 70 and len(resumed.model) == n_half
    resumed.train(progress=False)
    assert len(resumed.model) != n_half  # density control ran after the resume
    _assert_same(full, resumed)


def test_save_outputs(tiny, tmp_path):
    tr = Trainer(tiny, GSConfig.fast(steps=20))
    tr.train(progress=False)
    metrics = tr.write_outputs(tmp_path / "run", frames=4)
    for f in ("gaussians.ply", "checkpoint.pt", "metrics.json", "video/turntable.gif", "video/turntable.mp4"):
        assert (tmp_path / "run" / f).is_file(), f
    assert len(list((tmp_path / "run" / "test").glob("*_pred.png"))) == len(tiny.split["test"])
    assert len(list((tmp_path / "run" / "test").glob("*_gt.png"))) == len(tiny.split["test"])
    on_disk = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert on_disk["psnr"] == pytest.approx(metrics["psnr"]) and on_disk["steps"] == 20
    back = load_ply(tmp_path / "run" / "gaussians.ply")
    for k in back.params:
        assert torch.equal(back.params[k], tr.model.params[k].detach())
    # a Gaussian PLY initialises a new run that starts from it
    tr2 = Trainer(tiny, GSConfig.fast(steps=1, init=str(tmp_path / "run" / "gaussians.ply")))
    assert torch.equal(tr2.model.params["means"], back.params["means"])


def test_cli_train_gs(tiny_dir, tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["train", "gs", str(tiny_dir), "--steps", "20", "--out", str(out), "--frames", "3", "-q"]
    assert cli.main(args) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["steps"] == 20 and m["num_gaussians"] > 0
    assert "test PSNR" in capsys.readouterr().out
    # continue the run for 10 more steps
    assert cli.main([*args[:4], "30", *args[5:], "--resume", str(out / "checkpoint.pt")]) == 0
    assert json.loads((out / "metrics.json").read_text())["steps"] == 30
    assert cli.main(["train", "gs", str(tmp_path / "nope"), "--out", str(out), "-q"]) == 2
