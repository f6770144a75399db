"""NeRDF vs its teachers on the sample LLFF scene (CPU): quality and frames per second.

Trains two teachers — the paper's kind (NeRF hierarchical sampling, many samples a ray) and
raysplat's default (occupancy grid) — then distils a NeRDF from each, and reports per model: test
PSNR against the ground truth, PSNR against its teacher, and frames per second at the scene's
resolution (``--threads`` threads), with the NeRDF time split between the network and the
distribution integration. ``--encodings hashgrid pe`` distils one student per network input from
each teacher (the default is the hash-grid input alone); ``--sweep`` adds students of other widths
(distilled from the occupancy grid teacher for ``--sweep-seconds`` each).

Run: ``python benches/nerdf.py`` (about 2 x teacher + 2 x student seconds, plus evaluation);
``--teacher-seconds 60 --student-seconds 60`` for a quick look.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import raysplat as rs
import torch
from raysplat.nerdf import NerdfConfig
from raysplat.nerdf import Trainer as NerdfTrainer
from raysplat.nerf import NerfConfig, load_scene
from raysplat.nerf import Trainer as NerfTrainer


def fps(trainer, views, repeats: int = 3) -> float:
    v = views[0]
    h, w = v.image.shape[:2]
    trainer.render(v.c2w[None], v.K, w, h)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        trainer.render(v.c2w[None], v.K, w, h)
        times.append(time.perf_counter() - t0)
    return 1.0 / statistics.median(times)


def student_row(name, teacher_trainer, teacher_path, scene, seconds, width, out, encoding="hashgrid"):
    cfg = NerdfConfig(teacher=str(teacher_path), steps=None, seconds=seconds, width=width, encoding=encoding)
    s = NerdfTrainer(scene, cfg)
    s.train(progress=False)
    s.save_checkpoint(out / f"{name}.pt")
    ev = s.evaluate()
    views = s.test_views()
    s.timing = {"network_s": 0.0, "integration_s": 0.0, "rays": 0}
    f = fps(s, views)
    tm = s.timing
    net = tm["network_s"] / max(tm["network_s"] + tm["integration_s"], 1e-12)
    return {
        "model": name,
        "steps": s.step,
        "train_s": round(s.train_seconds, 1),
        "psnr": ev["psnr"],
        "psnr_vs_teacher": ev["psnr_vs_teacher"],
        "fps": f,
        "network_fraction": net,
        "width": width,
        "encoding": encoding,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher-seconds", type=float, default=300.0)
    ap.add_argument("--student-seconds", type=float, default=300.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--width", type=int, default=128, help="student width of the two main students")
    ap.add_argument(
        "--encodings", nargs="+", default=["hashgrid"], choices=["hashgrid", "pe"],
        help="student inputs distilled from each teacher (the first one for the sweep)",
    )  # fmt: skip
    ap.add_argument("--sweep", nargs="*", type=int, default=[], help="extra student widths, e.g. 64 256")
    ap.add_argument("--sweep-seconds", type=float, default=120.0)
    ap.add_argument("--out", default="out/nerdf_bench")
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rs.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scene = load_scene(rs.datasets.sample_scene("llff"))
    print(f"sample LLFF scene {scene.width}x{scene.height}, {args.threads} threads", flush=True)
    rows = []
    teachers = {
        "nerf-hierarchical": NerfConfig(sampler="hierarchical", n_coarse=64, n_fine=128),
        "nerf-occgrid": NerfConfig(sampler="occgrid"),
    }
    for name, base in teachers.items():
        cfg = base.replace(steps=None, seconds=args.teacher_seconds)
        t = NerfTrainer(scene, cfg)
        t.train(progress=False)
        path = out / f"{name}.pt"
        t.save_checkpoint(path)
        ev = t.evaluate()
        tf = fps(t, t.test_views())
        rows.append(
            {"model": name, "steps": t.step, "train_s": round(t.train_seconds, 1), "psnr": ev["psnr"],
             "psnr_vs_teacher": None, "fps": tf, "network_fraction": None, "width": None}
        )  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
        for enc in args.encodings:
            model = f"nerdf{'' if enc == 'hashgrid' else '[pe]'}<-{name.split('-')[1]}"
            row = student_row(model, t, path, scene, args.student_seconds, args.width, out, enc)
            row["speedup_vs_teacher"] = row["fps"] / tf
            rows.append(row)
            print(json.dumps(rows[-1]), flush=True)
        if name == "nerf-occgrid":
            for w in args.sweep:
                row = student_row(
                    f"nerdf-w{w}<-occgrid", t, path, scene, args.sweep_seconds, w, out, args.encodings[0]
                )
                rows.append(row)
                print(json.dumps(row), flush=True)
    print()
    print(
        f"{'model':<24}{'width':>6}{'steps':>7}{'train s':>9}{'PSNR':>8}{'vs teacher':>12}"
        f"{'FPS':>8}{'net %':>7}"
    )
    for r in rows:
        vt = "" if r["psnr_vs_teacher"] is None else f"{r['psnr_vs_teacher']:.2f}"
        nf = "" if r["network_fraction"] is None else f"{100 * r['network_fraction']:.0f}"
        print(
            f"{r['model']:<24}{r['width'] or '':>6}{r['steps']:>7}{r['train_s']:>9.0f}{r['psnr']:>8.2f}"
            f"{vt:>12}{r['fps']:>8.2f}{nf:>7}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
