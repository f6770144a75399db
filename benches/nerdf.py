"""NeRDF vs its teachers on the sample LLFF scene (CPU): quality and frames per second.

Trains two teachers — the paper's kind (NeRF hierarchical sampling, many samples a ray) and
raysplat's default (occupancy grid) — then distils a NeRDF from each, and reports per model: test
PSNR against the ground truth, PSNR against its teacher, and frames per second at the scene's
resolution (``--threads`` threads), with the NeRDF time split between the network and the
distribution integration. ``--encodings hashgrid pe`` distils one student per network input from
each teacher (the default is the hash-grid input alone); ``--sweep`` adds students of other widths
(distilled from the occupancy grid teacher for ``--sweep-seconds`` each).

Frames per second are measured at the end, all models in turn for ``--fps-rounds`` rounds, each
model's fastest frame kept: on a shared machine the load then weighs on every model alike, and
the speed-up ratios stay comparable. ``--teacher-steps`` / ``--student-steps`` fix the training
by steps instead of seconds, so the PSNRs do not depend on the machine's load.

Run: ``python benches/nerdf.py`` (about 2 x teacher + 2 x student seconds, plus evaluation);
``--teacher-seconds 60 --student-seconds 60`` for a quick look.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import raysplat as rs
import torch
from raysplat.nerdf import NerdfConfig
from raysplat.nerdf import Trainer as NerdfTrainer
from raysplat.nerf import NerfConfig, load_scene
from raysplat.nerf import Trainer as NerfTrainer


def frame_seconds(trainer) -> float:
    """Wall seconds of one full test frame."""
    v = trainer.test_views()[0]
    h, w = v.image.shape[:2]
    t0 = time.perf_counter()
    trainer.render(v.c2w[None], v.K, w, h)
    return time.perf_counter() - t0


def measure_fps(models: dict, rows: list[dict], rounds: int) -> None:
    """Renders one frame of every model in turn, ``rounds`` times (after a warm-up round), and
    stores each model's best frame rate, its NeRDF network share, and the students' speed-up
    over their teacher in ``rows``."""
    best = {name: float("inf") for name in models}
    for m in models.values():
        frame_seconds(m)  # warm-up
        if hasattr(m, "timing"):
            m.timing = {"network_s": 0.0, "integration_s": 0.0, "rays": 0}
    for _ in range(rounds):
        for name, m in models.items():
            best[name] = min(best[name], frame_seconds(m))
    for r in rows:
        r["fps"] = 1.0 / best[r["model"]]
        m = models[r["model"]]
        if hasattr(m, "timing"):
            tm = m.timing
            r["network_fraction"] = tm["network_s"] / max(tm["network_s"] + tm["integration_s"], 1e-12)
    for r in rows:
        if r.get("teacher"):
            r["speedup_vs_teacher"] = r["fps"] / next(t["fps"] for t in rows if t["model"] == r["teacher"])


def budget(seconds: float, steps: int | None) -> dict:
    """The training budget: ``steps`` when given, else ``seconds`` of wall time."""
    return {"steps": steps, "seconds": None} if steps else {"steps": None, "seconds": seconds}


def student(name, teacher_name, teacher_path, scene, limit, width, out, encoding="hashgrid"):
    cfg = NerdfConfig(teacher=str(teacher_path), width=width, encoding=encoding, **limit)
    s = NerdfTrainer(scene, cfg)
    s.train(progress=False)
    s.save_checkpoint(out / f"{name}.pt")
    ev = s.evaluate()
    row = {
        "model": name,
        "teacher": teacher_name,
        "steps": s.step,
        "train_s": round(s.train_seconds, 1),
        "psnr": ev["psnr"],
        "psnr_vs_teacher": ev["psnr_vs_teacher"],
        "fps": None,
        "network_fraction": None,
        "width": width,
        "encoding": encoding,
    }
    return s, row


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
    ap.add_argument("--teacher-steps", type=int, help="train each teacher this many steps (not seconds)")
    ap.add_argument("--student-steps", type=int, help="distil each student this many steps (not seconds)")
    ap.add_argument("--fps-rounds", type=int, default=5, help="interleaved timing rounds (best kept)")
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
    models = {}
    teachers = {
        "nerf-hierarchical": NerfConfig(sampler="hierarchical", n_coarse=64, n_fine=128),
        "nerf-occgrid": NerfConfig(sampler="occgrid"),
    }
    for name, base in teachers.items():
        cfg = base.replace(**budget(args.teacher_seconds, args.teacher_steps))
        t = NerfTrainer(scene, cfg)
        t.train(progress=False)
        path = out / f"{name}.pt"
        t.save_checkpoint(path)
        ev = t.evaluate()
        models[name] = t
        rows.append(
            {"model": name, "steps": t.step, "train_s": round(t.train_seconds, 1), "psnr": ev["psnr"],
             "psnr_vs_teacher": None, "fps": None, "network_fraction": None, "width": None}
        )  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
        limit = budget(args.student_seconds, args.student_steps)
        students = [(f"nerdf{'' if e == 'hashgrid' else '[pe]'}<-{name.split('-')[1]}", args.width, e, limit)
                    for e in args.encodings]  # fmt: skip
        if name == "nerf-occgrid":
            sweep_limit = budget(args.sweep_seconds, args.student_steps)
            students += [(f"nerdf-w{w}<-occgrid", w, args.encodings[0], sweep_limit) for w in args.sweep]
        for model, width, enc, lim in students:
            models[model], row = student(model, name, path, scene, lim, width, out, enc)
            rows.append(row)
            print(json.dumps(row), flush=True)
    measure_fps(models, rows, args.fps_rounds)
    print()
    print(
        f"{'model':<24}{'width':>6}{'steps':>7}{'train s':>9}{'PSNR':>8}{'vs teacher':>12}"
        f"{'FPS':>8}{'net %':>7}{'x teacher':>11}"
    )
    for r in rows:
        vt = "" if r["psnr_vs_teacher"] is None else f"{r['psnr_vs_teacher']:.2f}"
        nf = "" if r["network_fraction"] is None else f"{100 * r['network_fraction']:.0f}"
        su = f"{r['speedup_vs_teacher']:.1f}" if r.get("speedup_vs_teacher") else ""
        print(
            f"{r['model']:<24}{r['width'] or '':>6}{r['steps']:>7}{r['train_s']:>9.0f}{r['psnr']:>8.2f}"
            f"{vt:>12}{r['fps']:>8.2f}{nf:>7}{su:>11}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
