"""Worker of tests/test_distributed.py, launched by torchrun (``python -m torch.distributed.run
--nproc_per_node 2 tests/dist_worker.py SCENE OUT``): trains NeRF and 3DGS data-parallel on gloo,
writes every rank's parameters, checkpoints, resumes, and writes outputs to a per-rank folder
(only rank 0's may exist afterwards)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dist_cases import K_STEPS, RESUME_STEPS, gs_config, nerf_config  # noqa: E402
from raysplat.gs import Trainer as GSTrainer  # noqa: E402
from raysplat.nerf import Trainer as NerfTrainer  # noqa: E402
from raysplat.training import distributed, load_scene, outputs  # noqa: E402


def params_of(trainer) -> dict[str, torch.Tensor]:
    if isinstance(trainer, NerfTrainer):
        return {n: p.detach().clone() for n, p in trainer.named_parameters()}
    return {n: p.detach().clone() for n, p in trainer.model.params.items()}


def main() -> None:
    scene_dir, out = sys.argv[1], Path(sys.argv[2])
    created = distributed.init_from_env("cpu")
    assert created and dist.get_backend() == "gloo", "expected a gloo group from torchrun"
    r = distributed.rank()
    torch.set_num_threads(1)
    scene = load_scene(scene_dir)
    report = {"world": distributed.world_size()}
    for name, cls, cfg in (("nerf", NerfTrainer, nerf_config()), ("gs", GSTrainer, gs_config())):
        trainer = cls(scene, cfg)
        stats = [trainer.train_step() for _ in range(K_STEPS)]
        report[f"{name}_stats"] = stats
        torch.save(params_of(trainer), out / f"{name}_rank{r}.pt")
        ck = trainer.save_checkpoint(out / f"{name}_ck" / "checkpoint.pt")
        distributed.barrier()
        resumed = cls.load_checkpoint(ck, scene, steps=K_STEPS + RESUME_STEPS)
        resumed.train(progress=False)
        torch.save(params_of(resumed), out / f"{name}_resumed_rank{r}.pt")
        m = resumed.write_outputs(out / f"{name}_outputs_rank{r}", frames=0)
        report[f"{name}_metrics_steps"] = m["steps"]
    # rank 0's error (a non-empty output folder) is raised on every rank, none is left waiting
    try:
        distributed.run_on_main(outputs.prepare_dir, out / "nerf_ck")
        raised = "nothing"
    except FileExistsError:
        raised = "FileExistsError"
    report["raised"] = [None] * distributed.world_size()
    dist.all_gather_object(report["raised"], raised)
    if r == 0:
        (out / "report.json").write_text(json.dumps(report, default=float))
    distributed.finish_worker(created)


if __name__ == "__main__":
    main()
