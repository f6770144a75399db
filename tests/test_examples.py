"""Every script in examples/ runs end to end with tiny settings and writes what it promises."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from raysplat.datasets import make_scene

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_scene(tmp_path_factory.mktemp("ex") / "scene", "blender", size=24, views=8, seed=1)


def _run(script: str, *args: str) -> str:
    env = {**os.environ, "RAYSPLAT_NUM_THREADS": "2"}
    res = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True, env=env, timeout=300
    )
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


@pytest.mark.parametrize(
    ("script", "extra"),
    [
        ("train_nerf.py", ["--steps", "3", "--frames", "2"]),
        ("train_gs.py", ["--steps", "5", "--frames", "2"]),
        ("nerf_demo.py", ["--steps", "3", "--frames", "2", "--minutes", "0.5"]),
    ],
)
def test_training_examples(script, extra, data, tmp_path):
    out = tmp_path / "run"
    data_arg = ["--data", str(data)] if script == "nerf_demo.py" else [str(data)]
    _run(script, *data_arg, "--out", str(out), *extra)
    m = json.loads((out / "metrics.json").read_text())
    assert m["psnr"] > 5 and (out / "checkpoint.pt").is_file() and (out / "video" / "turntable.mp4").is_file()


def test_distributed_example_under_torchrun(data, tmp_path):
    """examples/train_distributed.py on 2 gloo processes (torchrun): rank 0 alone reports and writes."""
    out = tmp_path / "dist"
    env = {**os.environ, "RAYSPLAT_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    args = [str(data), "--method", "gs", "--steps", "3", "--batch", "2", "--out", str(out)]
    res = subprocess.run(
        [*cmd, str(EXAMPLES / "train_distributed.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.count("2 process(es)") == 1
    m = json.loads((out / "metrics.json").read_text())
    assert m["steps"] == 3 and m["config"]["batch_cameras"] == 2 and m["psnr"] > 5


def test_pronerf_example(tmp_path):
    data = make_scene(tmp_path / "llff", "llff", size=24, views=8, seed=1)
    out = tmp_path / "pro"
    stdout = _run(
        "pronerf.py",
        str(data),
        "--samples",
        "8",
        "--steps",
        "4",
        "--tiny",
        "--frames",
        "2",
        "--out",
        str(out),
    )
    m = json.loads((out / "metrics.json").read_text())
    assert m["steps"] == 4 and m["sampler"] == "pronerf" and m["render_breakdown"]["field_evals_per_ray"] == 8
    assert (out / "checkpoint.pt").is_file() and "render time a frame" in stdout


def test_ops_demo(tmp_path):
    out = tmp_path / "demo"
    _run("demo.py", "--steps", "5", "--size", "16", "--views", "4", "--out", str(out))
    m = json.loads((out / "metrics.json").read_text())
    assert m["steps"] == 5 and m["psnr"] > 0 and (out / "test_view.png").is_file()


def test_text_to_3d_example(tmp_path):
    out = tmp_path / "t3d"
    args = ["--steps", "2", "--size", "16", "--frames", "1", "--mesh-resolution", "16"]
    _run("text_to_3d.py", *args, "--out", str(out))
    m = json.loads((out / "metrics.json").read_text())
    assert m["steps"] == 2 and m["psnr"] > 0 and (out / "mesh.glb").is_file()
    assert (out / "video" / "turntable.mp4").is_file()


def test_stitch_example(tmp_path):
    out = tmp_path / "stitch"
    _run("stitch_demo.py", "--out", str(out), "--n", "1500", "--steps", "5", "--frames", "2")
    m = json.loads((out / "run" / "metrics.json").read_text())
    assert m["steps"] == 5 and m["n_boundary"] > 0 and (out / "run" / "stitched.ply").is_file()
    assert (out / "run" / "video" / "turntable.mp4").is_file()


def test_nerdf_example(data, tmp_path):
    out = tmp_path / "nd"
    _run(
        "nerdf.py",
        str(data),
        "--teacher-steps",
        "3",
        "--steps",
        "3",
        "--width",
        "16",
        "--frames",
        "0",
        "--out",
        str(out),
    )
    m = json.loads((out / "nerdf" / "metrics.json").read_text())
    assert (
        m["steps"] == 3 and m["psnr_vs_teacher"] is not None and (out / "teacher" / "checkpoint.pt").is_file()
    )


def test_gsplat_compat_example(tmp_path):
    out = tmp_path / "compat"
    _run("gsplat_compat.py", "--steps", "40", "--size", "48", "--gaussians", "400", "--out", str(out))
    m = json.loads((out / "metrics.json").read_text())
    assert m["pose_error_final"] < 0.5 * m["pose_error_start"]
    assert m["psnr_final"] > m["psnr_start"]
    assert all((out / f"{model}.png").is_file() for model in ("pinhole", "ortho", "fisheye"))


def test_texture_example(tmp_path):
    out = tmp_path / "tex"
    args = ["--steps", "2", "--views", "2", "--texture-size", "32", "--frames", "2"]
    _run("texture.py", *args, "--out", str(out))
    m = json.loads((out / "metrics.json").read_text())
    assert m["steps"] == 2 and m["views"] == 2 and (out / "textured.glb").is_file()
    assert (out / "video" / "turntable.mp4").is_file()
