"""The shared training surface: configs, metrics, cameras, the trainer lifecycle, checkpoints, the
output layout, and the CLI's one-line errors for user mistakes (exit status 2, no traceback)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch
from raysplat import cli, metrics
from raysplat.cameras import look_at, orbit, orbit_path, spiral_path
from raysplat.datasets import make_scene
from raysplat.gs import DensifyConfig, GSConfig, TrainConfig
from raysplat.nerf import NerfConfig
from raysplat.training import Config, load_checkpoint, outputs

#: small NeRF settings for a 32 x 32 scene
TINY_NERF = [
    "--set", "n_levels=4", "--set", "log2_table=12", "--set", "max_res=64", "--set", "hidden=16",
    "--set", "grid_resolution=16", "--set", "batch_rays=256", "--set", "eval_views=2",
]  # fmt: skip
SHARED_KEYS = ("method", "psnr", "ssim", "steps", "train_seconds", "render_ms_per_frame", "config")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_scene(tmp_path_factory.mktemp("train") / "scene", "blender", size=32, views=10, seed=0)


@pytest.fixture(scope="module")
def other_data(tmp_path_factory):
    return make_scene(tmp_path_factory.mktemp("train") / "other", "blender", size=32, views=10, seed=5)


@pytest.fixture(scope="module")
def gs_run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("gsrun") / "run"
    args = ["train", "gs", str(data), "--steps", "6", "--out", str(out), "--frames", "2", "-q"]
    assert cli.main(args) == 0
    return out


@pytest.fixture(scope="module")
def nerf_run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("nerfrun") / "run"
    args = ["train", "nerf", str(data), "--steps", "3", "--out", str(out), "--frames", "0", "-q", *TINY_NERF]
    assert cli.main(args) == 0
    return out


def _fails(capsys, argv: list[str], *words: str) -> str:
    """Runs the CLI expecting exit status 2 and one error line naming ``words``."""
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, (w, err)
    return err


# --------------------------------------------------------------------------------------- configs


def test_config_from_dict_is_strict_and_round_trips():
    with pytest.raises(ValueError, match="unknown NerfConfig key.*samplr"):
        NerfConfig.from_dict({"samplr": "proposal"})
    with pytest.raises(ValueError, match="unknown DensifyConfig key.*refine_strat"):
        GSConfig.from_dict({"densify": {"refine_strat": 3}})
    cfg = GSConfig.fast(steps=500, sh_degree=1)
    back = GSConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg and isinstance(back.densify, DensifyConfig)
    n = NerfConfig(sampler="proposal", prop_samples=[16, 8])
    assert NerfConfig.from_dict(n.to_dict()) == n and n.prop_samples == (16, 8)
    with pytest.raises(ValueError, match="unknown"):
        n.replace(nope=1)


def test_budget_fields():
    assert NerfConfig().steps == 2000 and GSConfig().steps == 7000
    timed = NerfConfig(seconds=30)
    assert timed.steps is None and timed.seconds == 30  # only seconds: steps are unbounded
    with pytest.raises(ValueError, match="seconds"):
        NerfConfig(seconds=0)
    with pytest.raises(ValueError, match="steps"):
        NerfConfig(steps=-1)
    with pytest.raises(ValueError, match="device"):
        GSConfig(device="gpu")


def test_precision_field_and_the_methods_that_refuse_it():
    from raysplat.stitch import StitchConfig

    assert NerfConfig().precision == "fp32" and NerfConfig(precision="bf16").precision == "bf16"
    with pytest.raises(ValueError, match="precision must be 'fp32', 'bf16' or 'fp16', got 'half'"):
        NerfConfig(precision="half")
    with pytest.raises(ValueError, match="precision 'bf16': GSConfig supports 'fp32' only.*SH evaluation"):
        GSConfig(precision="bf16")
    with pytest.raises(ValueError, match="precision 'fp16': StitchConfig supports 'fp32' only"):
        StitchConfig(precision="fp16")
    from raysplat.text3d import Text3DConfig

    with pytest.raises(ValueError, match="precision 'fp16' with densify"):
        Text3DConfig(representation="gs", densify={}, precision="fp16")


def test_precision_helpers():
    from raysplat.training.precision import (
        Autocast,
        GradScaling,
        check_precision,
        full_precision,
        set_network_precision,
    )

    class Net(Autocast, torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 4)

        def forward(self, x):
            with self.autocast(x):
                return self.lin(x), self.lin(x).float()

    net = torch.nn.Sequential(Net())
    x = torch.randn(3, 4)
    assert set_network_precision(net, "bf16") == 1 and net[0](x)[0].dtype == torch.bfloat16
    assert net[0](x)[1].dtype == torch.float32  # the networks return fp32
    with full_precision(net):
        assert net[0](x)[0].dtype == torch.float32
    assert net[0].amp_dtype == torch.bfloat16
    set_network_precision(net, "fp32")
    assert net[0](x)[0].dtype == torch.float32
    with pytest.raises(ValueError, match="precision must be one of"):
        set_network_precision(net, "int8")
    assert check_precision("fp32", "cpu") is None and check_precision("bf16", "cpu") == torch.bfloat16
    # fp16 loss scaling: an optimiser without gradients is skipped, the state round-trips
    sc = GradScaling("fp16", "cpu")
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    sc.step(opt)
    sc.update()
    set_network_precision(net, "fp16")
    sc.backward(net[0](x)[1].sum() * 1e-3)  # (x 65536 stays below the fp16 maximum)
    sc.step(opt)
    sc.update()
    assert sc.enabled and sc.scale() == 65536.0
    other = GradScaling("fp16", "cpu")
    other.load_state_dict(sc.state_dict())
    assert other.state_dict() == sc.state_dict()
    assert GradScaling("bf16", "cpu").state_dict() is None and GradScaling("fp32", "cpu").scale() == 1.0


def test_every_config_field_is_documented():
    for cls in (NerfConfig, GSConfig):
        docs = cls.field_docs()
        missing = [k for k, v in docs.items() if not v]
        assert not missing, (cls.__name__, missing)
    assert issubclass(NerfConfig, Config)


def test_trainconfig_is_a_deprecated_alias():
    with pytest.warns(DeprecationWarning, match="GSConfig"):
        cfg = TrainConfig(steps=10)
    assert isinstance(cfg, GSConfig)


# --------------------------------------------------------------------------------------- metrics


def test_ssim_paddings_and_psnr():
    g = torch.Generator().manual_seed(1)
    a = torch.rand(20, 24, 3, generator=g)
    b = (a + 0.05 * torch.randn(a.shape, generator=g)).clamp(0, 1)
    full = metrics.ssim_map(a.double(), b.double(), "zero")
    valid = metrics.ssim_map(a.double(), b.double(), "valid")
    assert full.shape == (1, 3, 20, 24) and valid.shape == (1, 3, 10, 14)
    torch.testing.assert_close(valid, full[..., 5:-5, 5:-5])  # valid = the interior of the padded map
    assert metrics.ssim(a, a) == pytest.approx(1.0) and metrics.ssim(a, b) < 1
    assert metrics.psnr(a * 0 + 0.5, a * 0 + 0.6) == pytest.approx(20.0)
    assert metrics.psnr(a, a) == math.inf
    loss = metrics.dssim_loss(a.requires_grad_(), b)
    loss.backward()
    assert a.grad is not None and float(loss.detach()) == pytest.approx(1 - float(full.mean()), abs=1e-5)
    with pytest.raises(ValueError, match="padding"):
        metrics.ssim(a, b, padding="same")


# --------------------------------------------------------------------------------------- cameras


def test_look_at_and_paths():
    eye, target = torch.tensor([3.0, -2.0, 1.0], dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    c = look_at(eye, target)
    R = c[:, :3]
    torch.testing.assert_close(R.T @ R, torch.eye(3, dtype=torch.float64))
    torch.testing.assert_close(-R[:, 2], (target - eye) / (target - eye).norm())  # looks down -z
    assert float(R[2, 1]) > 0  # camera up points to world +z
    ring = orbit((1.0, 2.0, 0.0), 2.0, 30.0, 8)
    d = ring[:, :, 3] - torch.tensor([1.0, 2.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(d.norm(dim=-1), torch.full((8,), 2.0, dtype=torch.float64))
    torch.testing.assert_close(d[:, 2], torch.full((8,), 1.0, dtype=torch.float64))  # sin 30 deg * 2
    fitted = orbit_path(ring, 8)
    torch.testing.assert_close(fitted, ring.float(), atol=1e-5, rtol=0)  # the orbit of an orbit is itself
    sp = spiral_path(ring[:3], 5)
    assert sp.shape == (5, 3, 4) and bool(torch.isfinite(sp).all())


# --------------------------------------------------------------------------------------- lifecycle


def test_same_layout_and_keys_for_every_method(gs_run, nerf_run):
    for run, method in ((gs_run, "gs"), (nerf_run, "nerf")):
        m = json.loads((run / outputs.METRICS).read_text())
        assert all(k in m for k in SHARED_KEYS), (method, sorted(m))
        assert m["method"] == method and m["render_ms_per_frame"] > 0 and 0 < m["ssim"] <= 1
        ck = torch.load(run / outputs.CHECKPOINT, weights_only=False)
        assert ck["method"] == method and ck["version"] == 1 and ck["step"] == m["steps"]
        assert {"c2w", "K", "width", "height", "split"} <= set(ck["cameras"])
        preds = sorted(p.name for p in (run / outputs.TEST_DIR).glob("*_pred.png"))
        gts = sorted(p.name for p in (run / outputs.TEST_DIR).glob("*_gt.png"))
        assert preds and len(preds) == len(gts)
    assert (gs_run / "video" / "turntable.gif").is_file() and (gs_run / "video" / "turntable.mp4").is_file()
    assert not (nerf_run / "video").exists()  # --frames 0: no video, and no crash


def test_load_checkpoint_reads_the_method(gs_run, nerf_run):
    g = load_checkpoint(gs_run / "checkpoint.pt")
    n = load_checkpoint(nerf_run / "checkpoint.pt")
    assert g.method == "gs" and n.method == "nerf" and g.step == 6 and n.step == 3
    K = torch.tensor([[30.0, 0, 16], [0, 30.0, 12], [0, 0, 1]])
    c2w = look_at(torch.tensor([0.0, -4.0, 2.0]), torch.zeros(3))[None].float()
    for t in (g, n):
        img = t.render(c2w, K, 32, 24)
        assert img.shape == (1, 24, 32, 3) and float(img.min()) >= 0 and float(img.max()) <= 1


def test_a_failure_after_training_keeps_model_and_metrics(data, tmp_path, monkeypatch, capsys):
    def broken(*a, **k):
        raise ValueError("video writer failed")

    monkeypatch.setattr(outputs, "save_video", broken)
    out = tmp_path / "run"
    _fails(capsys, ["train", "gs", str(data), "--steps", "2", "--out", str(out), "-q"], "video writer")
    assert (out / "checkpoint.pt").is_file() and (out / "metrics.json").is_file()
    assert (out / "gaussians.ply").is_file()


# --------------------------------------------------------------------------------------- CLI


def test_cli_user_mistakes_are_one_line_errors(data, other_data, gs_run, nerf_run, tmp_path, capsys):
    base = ["train", "gs", str(data), "--steps", "2", "-q"]
    _fails(capsys, [*base, "--out", str(tmp_path / "a"), "--device", "gpu"], "device", "gpu")
    if not torch.cuda.is_available():
        _fails(capsys, [*base, "--out", str(tmp_path / "b"), "--device", "cuda"], "CUDA")
    _fails(capsys, [*base, "--out", str(gs_run)], "not empty", "--force")
    _fails(capsys, [*base, "--out", str(tmp_path / "c"), "--set", "sh_degre=1"], "sh_degre")
    _fails(capsys, [*base, "--out", str(tmp_path / "p"), "--precision", "bf16"], "precision", "3DGS")
    _fails(capsys, [*base, "--out", str(tmp_path / "d"), "--resume", str(nerf_run / "checkpoint.pt")], "nerf")
    resume = ["train", "gs", str(data), "--out", str(tmp_path / "e"), "-q", "--resume"]
    _fails(capsys, [*resume, str(gs_run / "checkpoint.pt"), "--steps", "3"], "below", "6")
    other = ["train", "gs", str(other_data), "--out", str(tmp_path / "f"), "-q"]
    _fails(capsys, [*other, "--resume", str(gs_run / "checkpoint.pt")], "not the same scene")
    render = ["render", str(nerf_run / "checkpoint.pt"), "--frames", "1", "--out", str(tmp_path / "g")]
    _fails(capsys, [*render, "--data", str(other_data)], "not the same scene")
    _fails(capsys, ["render", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "h")], "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    _fails(
        capsys,
        ["render", str(tmp_path / "junk.pt"), "--out", str(tmp_path / "i")],
        "not a raysplat checkpoint",
    )
    with pytest.raises(SystemExit) as e:
        cli.main([*base, "--out", str(tmp_path / "j"), "--frames", "-1"])
    assert e.value.code == 2


def test_cli_render_checkpoint_and_ply(gs_run, tmp_path):
    out = tmp_path / "r"
    assert cli.main(["render", str(gs_run / "checkpoint.pt"), "--path", "test", "--out", str(out)]) == 0
    assert (out / "video" / "test.mp4").is_file() and list((out / "test").glob("*_pred.png"))
    ply = ["render", str(gs_run / "gaussians.ply"), "--frames", "3", "--size", "40", "30"]
    assert cli.main([*ply, "--out", str(tmp_path / "p")]) == 0
    frames = sorted((tmp_path / "p" / "frames").glob("*.png"))
    assert len(frames) == 3 and (tmp_path / "p" / "video" / "turntable.gif").is_file()


def test_cli_resume_continues(data, gs_run, tmp_path):
    out = tmp_path / "more"
    args = ["train", "gs", str(data), "--steps", "8", "--out", str(out), "--frames", "0", "-q"]
    assert cli.main([*args, "--resume", str(gs_run / "checkpoint.pt")]) == 0
    assert json.loads((out / "metrics.json").read_text())["steps"] == 8


def test_python_dash_m_raysplat():
    res = subprocess.run(
        [sys.executable, "-m", "raysplat", "--help"], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0 and "train" in res.stdout and "render" in res.stdout
