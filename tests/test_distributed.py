"""Data-parallel training on torch.distributed (gloo, 2 CPU processes launched by torchrun).

One torchrun launch of tests/dist_worker.py trains NeRF and 3DGS for K steps on 2 ranks, saves
each rank's parameters, checkpoints (rank 0), resumes on every rank and writes outputs to a
per-rank folder. Here the same settings run in one process on the whole batch: the parameters
must agree to float tolerance (3DGS through a densification step), the ranks must agree exactly,
and only rank 0 may have written anything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from raysplat.datasets import make_scene
from raysplat.gs import Trainer as GSTrainer
from raysplat.nerf import Trainer as NerfTrainer
from raysplat.training import distributed, load_scene

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dist_cases import K_STEPS, RESUME_STEPS, gs_config, nerf_config  # noqa: E402

HERE = Path(__file__).resolve().parent
CASES = {"nerf": (NerfTrainer, nerf_config), "gs": (GSTrainer, gs_config)}


def _torchrun(*args: str, cwd: Path | None = None, timeout: int = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RAYSPLAT_NUM_THREADS": "1"}
    env.pop("RANK", None)  # never inherit an outer launcher's environment
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)
    assert res.returncode == 0, (res.stdout[-2000:], res.stderr[-4000:])
    return res


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    return make_scene(tmp_path_factory.mktemp("dist") / "scene", "blender", size=16, views=4, seed=1)


@pytest.fixture(scope="module")
def run(scene_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("dist_run")
    _torchrun(str(HERE / "dist_worker.py"), str(scene_dir), str(out))
    return out, json.loads((out / "report.json").read_text())


def _params(trainer) -> dict[str, torch.Tensor]:
    if isinstance(trainer, NerfTrainer):
        return {n: p.detach() for n, p in trainer.named_parameters()}
    return {n: p.detach() for n, p in trainer.model.params.items()}


@pytest.fixture(scope="module")
def single(scene_dir, tmp_path_factory):
    """One process on the whole batch: the K-step trainer, its stats, and its resumed params."""
    torch.set_num_threads(1)
    scene, out = load_scene(scene_dir), tmp_path_factory.mktemp("single")
    res = {}
    for name, (cls, make) in CASES.items():
        t = cls(scene, make())
        stats = [t.train_step() for _ in range(K_STEPS)]
        params = {k: v.clone() for k, v in _params(t).items()}
        ck = t.save_checkpoint(out / name / "checkpoint.pt")
        resumed = cls.load_checkpoint(ck, scene, steps=K_STEPS + RESUME_STEPS)
        resumed.train(progress=False)
        res[name] = (stats, params, _params(resumed))
    return res


def _close(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].shape == b[k].shape, k
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=atol, msg=lambda m, k=k: f"{k}: {m}")


@pytest.mark.parametrize("name", ["nerf", "gs"])
def test_two_ranks_equal_one_process_on_the_concatenated_batch(run, single, name):
    out, report = run
    assert report["world"] == 2
    stats, params, _ = single[name]
    r0 = torch.load(out / f"{name}_rank0.pt")
    r1 = torch.load(out / f"{name}_rank1.pt")
    for k in r0:  # every rank holds bit-identical parameters
        assert torch.equal(r0[k], r1[k]), k
    _close(r0, params, atol=1e-5)
    for mine, theirs in zip(report[f"{name}_stats"], stats, strict=True):
        assert mine["loss"] == pytest.approx(theirs["loss"], rel=1e-5)


def test_gs_densifies_identically(run, single):
    """The reduced density statistics make both ranks grow and prune exactly as one process."""
    _, report = run
    stats, params, _ = single["gs"]
    keys = ("n", "cloned", "split", "pruned")
    assert [[s[k] for k in keys] for s in report["gs_stats"]] == [[s[k] for k in keys] for s in stats]
    assert any(s["split"] + s["cloned"] > 0 for s in stats) and any(s["pruned"] > 0 for s in stats)
    assert len(params["means"]) != gs_config().init_random


@pytest.mark.parametrize("name", ["nerf", "gs"])
def test_every_rank_resumes_from_rank0_checkpoint(run, single, name):
    out, report = run
    _, _, resumed = single[name]
    r0 = torch.load(out / f"{name}_resumed_rank0.pt")
    r1 = torch.load(out / f"{name}_resumed_rank1.pt")
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k
    _close(r0, resumed, atol=1e-4)
    assert report[f"{name}_metrics_steps"] == K_STEPS + RESUME_STEPS


@pytest.mark.parametrize("name", ["nerf", "gs"])
def test_only_rank0_writes(run, name):
    out, _ = run
    assert (out / f"{name}_ck" / "checkpoint.pt").is_file()
    assert sorted(p.name for p in (out / f"{name}_ck").iterdir()) == ["checkpoint.pt"]
    assert (out / f"{name}_outputs_rank0" / "metrics.json").is_file()
    assert not (out / f"{name}_outputs_rank1").exists()


def test_rank0_errors_are_raised_on_every_rank(run):
    _, report = run
    assert report["raised"] == ["FileExistsError", "FileExistsError"]


def test_cli_through_torchrun(scene_dir, tmp_path):
    res = _torchrun(
        "-m", "raysplat", "train", "gs", str(scene_dir), "--steps", "3", "--frames", "0",
        "--batch-cameras", "2", "--out", "run", "-q", cwd=tmp_path,
    )  # fmt: skip
    summary = [line for line in res.stdout.splitlines() if line.startswith("gs:")]
    assert len(summary) == 1 and "2 processes" in summary[0]  # rank 0 alone reports
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["steps"] == 3 and m["config"]["batch_cameras"] == 2
    assert (tmp_path / "run" / "checkpoint.pt").is_file() and (tmp_path / "run" / "gaussians.ply").is_file()


# ----------------------------------------------------------------------------- without a group


def test_shard_partitions_the_batch():
    for n in (2, 5, 96, 97):
        for world in (1, 2, 3):
            parts = [distributed.shard(n, r, world) for r in range(world)]
            idx = [i for s in parts for i in range(n)[s]]
            assert idx == list(range(n))
            sizes = [s.stop - s.start for s in parts]
            assert max(sizes) - min(sizes) <= 1


def test_single_process_helpers_are_no_ops():
    assert distributed.world_size() == 1 and distributed.rank() == 0 and distributed.is_main()
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.full((3,), 2.0)
    extra = torch.tensor([1.0, 2.0])
    assert distributed.all_reduce_grads([p], extra) is extra
    assert torch.equal(p.grad, torch.full((3,), 2.0))
    assert distributed.run_on_main(lambda x: x + 1, 1) == 2
    assert distributed.local_device("cpu") == "cpu"
    assert distributed.init_from_env("cpu") is False  # not launched by torchrun


def test_backend_choice():
    assert distributed.backend_for("cpu") == "gloo"
    if torch.distributed.is_nccl_available():
        assert distributed.backend_for("cuda") == "nccl"


def test_batch_smaller_than_world_is_refused(monkeypatch, scene_dir):
    monkeypatch.setattr(distributed, "world_size", lambda: 4)
    with pytest.raises(ValueError, match="batch_cameras"):
        GSTrainer(scene_dir, gs_config().replace(batch_cameras=2))
    with pytest.raises(ValueError, match="batch_rays"):
        NerfTrainer(scene_dir, nerf_config().replace(batch_rays=3))


def test_methods_without_data_parallel_refuse_a_process_group(monkeypatch):
    from raysplat.training import Trainer, TrainingConfig

    class Serial(Trainer):
        method = "serial"
        _train_step = render = test_views = state_dict = load_state_dict = _restore = None

    Serial.__abstractmethods__ = frozenset()
    Serial(TrainingConfig())  # fine without a group
    monkeypatch.setattr(distributed, "is_distributed", lambda: True)
    with pytest.raises(ValueError, match="gs and nerf only"):
        Serial(TrainingConfig())


def test_batch_cameras_is_validated():
    with pytest.raises(ValueError, match="batch_cameras"):
        gs_config().replace(batch_cameras=0)


def test_one_process_camera_batch_trains(scene_dir):
    """batch_cameras > 1 in one process: the loss is the mean over the views."""
    t = GSTrainer(scene_dir, gs_config().replace(batch_cameras=3, steps=2))
    s = t.train(progress=False)
    assert t.step == 2 and s["loss"] > 0
