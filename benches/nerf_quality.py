"""NeRF quality vs wall time on the sample scenes (CPU): all three samplers in one run.

For each scene (the sample Blender scene, 100x100, and the sample LLFF scene) and sampler, trains
for ``--budget`` seconds of wall time (the learning-rate decay follows the time budget), and
evaluates on the test views at 1/3, 2/3 and all of the budget (evaluation time is not counted).
Prints one table row per evaluation: sampler, scene, steps, wall s, CPU s, test PSNR, SSIM, samples
per ray (radiance-field samples per training ray) and training rays per second (of the ``--clock``:
with ``--clock cpu``, per CPU second / threads).

Run: ``python benches/nerf_quality.py`` (about 2 x 3 x (budget + evaluation)); e.g.
``--budget 120 --scenes blender --samplers occgrid`` for a quick look.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import raysplat as rs
import torch
from raysplat.nerf import NerfConfig, Trainer, load_scene


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=300.0, help="training seconds per run (default 300)")
    ap.add_argument("--scenes", nargs="+", default=["blender", "llff"], choices=["blender", "llff"])
    ap.add_argument("--samplers", nargs="+", default=list(rs.nerf.SAMPLERS), choices=rs.nerf.SAMPLERS)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="budget in wall seconds, or in process CPU seconds / threads (for a machine shared with "
        "other jobs: estimates idle-machine wall time)",
    )
    ap.add_argument("--evals", type=int, default=3, help="evaluations per run, evenly spaced in time")
    ap.add_argument("--out", default="out/nerf_quality", help="renders and results.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rs.set_num_threads(args.threads)
    out = Path(args.out)
    rows = []
    header = (
        f"{'sampler':<13}{'scene':<9}{'steps':>7}{'wall s':>9}{'cpu s':>8}{'PSNR':>8}{'SSIM':>8}"
        f"{'samples/ray':>13}{'rays/s':>9}"
    )
    print(
        f"raysplat {rs.__version__}, {args.threads} threads, "
        f"budget {args.budget:.0f} s ({args.clock} clock) per run",
        flush=True,
    )
    for scene_name in args.scenes:
        scene = load_scene(rs.datasets.sample_scene(scene_name))
        for sampler in args.samplers:
            cfg = NerfConfig(sampler=sampler, steps=None, seconds=args.budget, clock=args.clock)
            trainer = Trainer(scene, cfg)
            for k in range(1, args.evals + 1):
                trainer.train(seconds=args.budget * k / args.evals, progress=False)
                ev = trainer.evaluate()
                row = {
                    "sampler": sampler,
                    "scene": scene_name,
                    "steps": trainer.step,
                    "wall_s": round(trainer.train_seconds, 1),
                    "cpu_s": round(trainer.cpu_seconds, 1),
                    "psnr": round(ev["psnr"], 2),
                    "ssim": round(ev["ssim"], 3),
                    "samples_per_ray": round(trainer.stats["samples"] / max(trainer.stats["rays"], 1), 1),
                    "rays_per_s": round(trainer.stats["rays"] / max(trainer.elapsed(), 1e-9)),
                    "mean_color_psnr": round(ev["mean_color_psnr"], 2),
                }
                rows.append(row)
                if len(rows) == 1:
                    print(header)
                print(
                    f"{sampler:<13}{scene_name:<9}{row['steps']:>7}{row['wall_s']:>9.1f}{row['cpu_s']:>8.1f}{row['psnr']:>8.2f}"
                    f"{row['ssim']:>8.3f}{row['samples_per_ray']:>13.1f}{row['rays_per_s']:>9}",
                    flush=True,
                )
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(rows, indent=2))
    print(f"results in {out / 'results.json'}")


if __name__ == "__main__":
    main()
