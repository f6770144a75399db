"""Distil a NeRDF (one network pass per ray) from a NeRF: trains the teacher first unless
``--teacher`` names a NeRF checkpoint, then the student, and compares their render speed.

Writes the shared run layout for both (OUT/teacher and OUT/nerdf: checkpoint.pt, metrics.json,
test/, video/). Without DATA it uses raysplat's generated sample scene of ``--format``.

Run: ``python examples/nerdf.py --format llff --teacher-steps 2000 --steps 3000 --out runs/nerdf_example``
(the same as ``raysplat train nerf DATA --out T`` then ``raysplat train nerdf DATA --teacher
T/checkpoint.pt``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from raysplat.datasets import sample_scene
from raysplat.nerdf import NerdfConfig
from raysplat.nerdf import Trainer as NerdfTrainer
from raysplat.nerf import NerfConfig
from raysplat.nerf import Trainer as NerfTrainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="?", default=None, help="dataset directory (default: the sample scene)")
    ap.add_argument("--format", choices=("blender", "llff"), default="llff", help="sample scene format")
    ap.add_argument("--teacher", default=None, help="a trained NeRF checkpoint (default: train one)")
    ap.add_argument("--teacher-steps", type=int, default=2000)
    ap.add_argument("--steps", type=int, default=3000, help="distillation steps")
    ap.add_argument("--width", type=int, default=128, help="student MLP width")
    ap.add_argument("--frames", type=int, default=40, help="turntable frames (0: no video)")
    ap.add_argument("--out", default="runs/nerdf_example")
    args = ap.parse_args()
    data = args.data or sample_scene(args.format, progress=True)
    out = Path(args.out)
    teacher = args.teacher
    if teacher is None:
        t = NerfTrainer(data, NerfConfig(steps=args.teacher_steps))
        tm = t.run(out / "teacher", frames=args.frames, force=True)
        teacher = str(out / "teacher" / "checkpoint.pt")
        print("teacher", json.dumps({k: tm[k] for k in ("psnr", "render_ms_per_frame")}))
    s = NerdfTrainer(data, NerdfConfig(teacher=teacher, steps=args.steps, width=args.width))
    m = s.run(out / "nerdf", frames=args.frames, force=True)
    keys = (
        "steps",
        "train_seconds",
        "psnr",
        "psnr_vs_teacher",
        "render_ms_per_frame",
        "render_network_fraction",
    )
    print("nerdf", json.dumps({k: m[k] for k in keys}))


if __name__ == "__main__":
    main()
