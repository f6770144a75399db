"""The trainers and CLIs end to end on the accelerator (issue: the CUDA path): NeRF with each
sampler, 3DGS, text-to-3D (NeRF and Gaussians), NeRDF (both inputs) and TexGen texturing run a
few steps with ``--device`` and write their outputs (stitching runs on the CPU only for now),
through ``raysplat.backend("auto")`` (nerfacc / gsplat when they load) and ``backend("torch")``
(the twins).

Marked ``cuda``. Without CUDA they skip, unless ``RAYSPLAT_TEST_DEVICE=cpu``: then they run on
the CPU under ``backend("torch")``, the code CUDA tensors run, which proves that no trainer needs
a Rust-only path (a CPU tensor conversion, a NumPy call) to train, evaluate and export.
"""

from __future__ import annotations

import json
import os

import pytest
import raysplat as rs
import torch
from raysplat.cli import main
from raysplat.datasets import make_scene

DEVICE = os.environ.get("RAYSPLAT_TEST_DEVICE", "cuda")
PATHS = ["auto", "torch"] if DEVICE != "cpu" else ["torch"]

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        DEVICE != "cpu" and not torch.cuda.is_available(),
        reason="CUDA is not available (RAYSPLAT_TEST_DEVICE=cpu runs these on the CPU twins)",
    ),
]

FIELD = {"n_levels": 4, "log2_table": 12, "max_res": 64, "hidden": 16}
NERF = {
    **FIELD, "prop_samples": 32, "num_samples": 8, "n_coarse": 8, "n_fine": 8, "grid_resolution": 16,
    "batch_rays": 128, "target_samples": 4096, "eval_views": 1,
}  # fmt: skip
GS: dict = {}
TEXT3D = {
    **FIELD, "render_size": 16, "eval_size": 16, "eval_views": 1, "grid_resolution": 16,
    "n_gaussians": 200, "mesh_resolution": 24, "mesh_threshold": 1.0,
}  # fmt: skip
NERDF = {"width": 16, "n_samples": 8, "n_samples_test": 8, "batch_rays": 64, "eval_views": 1}


@pytest.fixture(params=PATHS)
def path(request):
    with rs.backend(request.param):
        yield request.param


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    return make_scene(tmp_path_factory.mktemp("dev") / "scene", "blender", size=16, views=6, seed=0)


def _sets(d: dict) -> list[str]:
    return [f"--set={k}={v}" for k, v in d.items()]


def _run(args: list[str], out) -> dict:
    assert main([*args, "--device", DEVICE, "--out", str(out), "-q"]) == 0
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.parametrize("sampler", ["occgrid", "proposal", "hierarchical"])
def test_nerf_trains_and_renders_on_device(scene_dir, tmp_path, path, sampler):
    sets = _sets({**NERF, "sampler": sampler, "warmup_steps": 2})
    m = _run(["train", "nerf", str(scene_dir), "--steps", "3", "--frames", "1", *sets], tmp_path / "run")
    assert m["steps"] == 3 and m["psnr"] is not None
    ck = str(tmp_path / "run" / "checkpoint.pt")
    assert main(["render", ck, "--frames", "1", "--device", DEVICE, "--out", str(tmp_path / "r")]) == 0


def test_gs_trains_on_device(scene_dir, tmp_path, path):
    m = _run(["train", "gs", str(scene_dir), "--steps", "3", "--frames", "1", *_sets(GS)], tmp_path / "gs")
    assert m["steps"] == 3 and (tmp_path / "gs" / "gaussians.ply").is_file()


@pytest.mark.parametrize("representation", ["nerf", "gs"])
def test_text_to_3d_on_device(tmp_path, path, representation):
    out = tmp_path / representation
    args = ["text-to-3d", "--prior", "mixture:disc", "--repr", representation]
    args += ["--steps", "2", "--frames", "1"]
    m = _run([*args, *_sets(TEXT3D)], out)
    assert m["steps"] == 2


def test_nerdf_distils_on_device(scene_dir, tmp_path, path):
    teacher = tmp_path / "teacher"
    _run(["train", "nerf", str(scene_dir), "--steps", "2", "--frames", "0", *_sets(NERF)], teacher)
    for encoding in ("pe", "hashgrid"):
        sets = _sets({**NERDF, "encoding": encoding})
        out = tmp_path / encoding
        args = ["train", "nerdf", str(scene_dir), "--teacher", str(teacher / "checkpoint.pt"), "--steps", "2"]
        m = _run([*args, "--frames", "0", *sets], out)
        assert m["steps"] == 2 and m["psnr_vs_teacher"] is not None


def test_texture_on_device(tmp_path, path):
    import trimesh
    from raysplat.guidance import tiny_stable_diffusion

    prior = tiny_stable_diffusion(tmp_path / "tiny", seed=0)
    mesh = tmp_path / "ball.obj"
    trimesh.creation.icosphere(1).export(mesh)
    args = ["texture", str(mesh), "a red ball", "--prior", str(prior), "--views", "2", "--steps", "2"]
    m = _run([*args, "--texture-size", "32", "--frames", "1", "--threads", "1"], tmp_path / "tex")
    assert m["steps"] == 2 and (tmp_path / "tex" / "textured.glb").is_file()
