"""The trainers and CLIs end to end on the accelerator (issue: the CUDA path): NeRF with each
sampler, 3DGS, text-to-3D (NeRF and Gaussians), NeRDF (both inputs), TexGen texturing and 3DGS
stitching run a few steps with ``--device`` and write their outputs, through
``raysplat.backend("auto")`` (nerfacc / gsplat when they load) and ``backend("torch")`` (the
twins); NeRF, NeRDF and text-to-3D also with ``--precision bf16`` / ``fp16`` (mixed precision:
the networks under autocast, compared with fp32).

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


@pytest.mark.parametrize("sampler", ["occgrid", "proposal", "hierarchical", "pronerf"])
def test_nerf_trains_and_renders_on_device(scene_dir, tmp_path, path, sampler):
    sets = _sets({**NERF, "sampler": sampler, "warmup_steps": 2})
    m = _run(["train", "nerf", str(scene_dir), "--steps", "3", "--frames", "1", *sets], tmp_path / "run")
    assert m["steps"] == 3 and m["psnr"] is not None
    ck = str(tmp_path / "run" / "checkpoint.pt")
    assert main(["render", ck, "--frames", "1", "--device", DEVICE, "--out", str(tmp_path / "r")]) == 0


def test_gs_trains_on_device(scene_dir, tmp_path, path):
    m = _run(["train", "gs", str(scene_dir), "--steps", "3", "--frames", "1", *_sets(GS)], tmp_path / "gs")
    assert m["steps"] == 3 and (tmp_path / "gs" / "gaussians.ply").is_file()


@pytest.mark.parametrize(("representation", "method"), [("nerf", "sds"), ("nerf", "vsd"), ("gs", "vsd")])
def test_text_to_3d_on_device(tmp_path, path, representation, method):
    """SDS, and VSD with its rendered ε_φ (3D models of the particles' kind on the device)."""
    out = tmp_path / f"{representation}_{method}"
    args = ["text-to-3d", "--prior", "mixture:disc", "--repr", representation, "--method", method]
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
    m = _run([*args, "--texture-size", "32", "--frames", "1", "--precision", "fp16"], tmp_path / "tex16")
    assert m["precision"] == "fp16" and (tmp_path / "tex16" / "textured.glb").is_file()


# ------------------------------------------------------------------------- mixed precision
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
_FP32_RUNS: dict = {}


def _nerf_psnrs(scene_dir, precision: str) -> tuple[float, float, set]:
    """Test PSNR before and after 12 seeded steps at ``precision`` (through the current
    backend), and the dtypes the colour MLP's first layer produced."""
    from raysplat.nerf import NerfConfig, Trainer

    kw = {**NERF, "warmup_steps": 2, "steps": 12, "device": DEVICE, "eval_views": 1}
    trainer = Trainer(str(scene_dir), NerfConfig(**kw, precision=precision))
    seen: set = set()
    trainer.field.color_mlp[0].register_forward_hook(lambda m, i, o: seen.add(o.dtype))
    before = trainer.evaluate()["psnr"]
    trainer.train(progress=False)
    return before, trainer.evaluate()["psnr"], seen


def test_pronerf_mixed_precision_on_device(scene_dir, tmp_path, path):
    """ProNeRF at bf16: the field's MLPs autocast, its sampling networks stay fp32 (positions)."""
    sets = _sets({**NERF, "sampler": "pronerf", "warmup_steps": 2})
    args = ["train", "nerf", str(scene_dir), "--steps", "3", "--frames", "1", "--precision", "bf16"]
    m = _run([*args, *sets], tmp_path / "run")
    assert m["steps"] == 3 and m["psnr"] is not None and m["config"]["precision"] == "bf16"


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_nerf_mixed_precision_trains_like_fp32(scene_dir, tmp_path, path, precision):
    """The same seeded run at fp32 and at ``precision``: the MLPs run in that dtype, both runs
    improve the test PSNR and end within 0.3 dB of each other; the CLI records the precision
    (and fp16's loss-scaler state) in the checkpoint."""
    if path not in _FP32_RUNS:
        _FP32_RUNS[path] = _nerf_psnrs(scene_dir, "fp32")
    (b32, a32, s32), (b, a, seen) = _FP32_RUNS[path], _nerf_psnrs(scene_dir, precision)
    assert s32 == {torch.float32} and seen == {DTYPES[precision]}
    assert a32 > b32 + 0.5 and a > b + 0.5, (b32, a32, b, a)
    assert abs(a - a32) < 0.3, (a32, a)
    args = ["train", "nerf", str(scene_dir), "--steps", "2", "--frames", "0", "--precision", precision]
    m = _run([*args, *_sets({**NERF, "eval_views": 1})], tmp_path / "run")
    assert m["config"]["precision"] == precision
    ck = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert ck["config"]["precision"] == precision
    assert (ck["state"]["grad_scaler"] is not None) == (precision == "fp16")


def test_nerdf_mixed_precision_on_device(scene_dir, tmp_path, path):
    """NeRDF's networks (both inputs) train under bf16, their colours within 3 % of fp32's."""
    from raysplat.nerdf import NerdfConfig, Trainer
    from raysplat.training.precision import set_network_precision

    teacher = tmp_path / "teacher"
    _run(["train", "nerf", str(scene_dir), "--steps", "2", "--frames", "0", *_sets(NERF)], teacher)
    for encoding in ("pe", "hashgrid"):
        cfg = NerdfConfig(
            **NERDF, encoding=encoding, teacher=str(teacher / "checkpoint.pt"), steps=2, device=DEVICE,
            precision="bf16",
        )  # fmt: skip
        student = Trainer(str(scene_dir), cfg)
        student.train(progress=False)
        o, d, v = student.make_rays(student.info.c2w[:1], student.info.K[:1])
        colors = {}
        with torch.no_grad():
            for prec in ("fp32", "bf16"):
                set_network_precision(student.net, prec)
                colors[prec] = student.render_rays(o, d, v).colors
        err = (colors["bf16"] - colors["fp32"]).abs().max()
        assert torch.isfinite(colors["bf16"]).all() and float(err) < 0.03, (encoding, float(err))


@pytest.mark.parametrize(
    ("representation", "precision", "method"), [("nerf", "bf16", "vsd"), ("gs", "fp16", "sds")]
)
def test_text_to_3d_mixed_precision_on_device(tmp_path, path, representation, precision, method):
    out = tmp_path / representation
    args = ["text-to-3d", "--prior", "mixture:disc", "--repr", representation, "--precision", precision]
    args += ["--method", method]
    m = _run([*args, "--steps", "2", "--frames", "1", *_sets(TEXT3D)], out)
    assert m["steps"] == 2 and m["config"]["precision"] == precision


# ------------------------------------------------------------------------------ stitching
def test_stitch_on_device(tmp_path, path):
    """``raysplat stitch --device``: the renders and the optimisation on the device; its first
    loss equals the CPU (Rust) run's, and the loss goes down."""
    from raysplat.gs.ply import save_ply
    from raysplat.stitch import StitchConfig, stitch
    from raysplat.stitch.demo import demo_problem

    target, source, sel, tf = demo_problem(1500, seed=8)
    save_ply(target, tmp_path / "t.ply")
    save_ply(source, tmp_path / "s.ply")
    small = {"width": 32, "height": 24, "views": 4, "out_width": 24, "out_height": 16, "frames": 1}
    args = ["stitch", str(tmp_path / "t.ply"), str(tmp_path / "s.ply"), "--select", sel, "--scale", "1.01"]
    m = _run([*args, "--steps", "2", *_sets(small)], tmp_path / "st")
    assert m["steps"] == 2 and m["n_boundary"] > 0 and (tmp_path / "st" / "stitched.ply").is_file()
    cfg = StitchConfig(steps=10, progress=False, **small)  # loss rows: steps 1 and 10
    with rs.backend("rust"):
        cpu = stitch(target, source, sel, tf, cfg).metrics["loss_history"]["rows"]
    dev = stitch(target, source, sel, tf, cfg.replace(device=DEVICE)).metrics["loss_history"]["rows"]
    assert abs(dev[0][1] - cpu[0][1]) <= 1e-3 * abs(cpu[0][1])
    assert dev[-1][1] < dev[0][1]
