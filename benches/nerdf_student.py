"""One longer NeRDF distillation from a saved teacher checkpoint (e.g. one written by
``benches/nerdf.py`` to ``--out``), then the teacher's and the student's frame rates measured in
turn (best of ``--fps-rounds`` each, as in ``benches/nerdf.py``).

Usage: python benches/nerdf_student.py TEACHER.pt [--seconds 600] [--threads 2] [--encoding hashgrid]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import raysplat as rs
import torch
from raysplat.nerdf import NerdfConfig
from raysplat.nerdf import Trainer as NerdfTrainer
from raysplat.nerf import Trainer as NerfTrainer
from raysplat.nerf import load_scene

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nerdf import measure_fps  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("teacher", help="a NeRF checkpoint trained on the sample LLFF scene")
    ap.add_argument("--seconds", type=float, default=600.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--encoding", choices=["hashgrid", "pe"], default="hashgrid")
    ap.add_argument("--fps-rounds", type=int, default=5)
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rs.set_num_threads(args.threads)
    scene = load_scene(rs.datasets.sample_scene("llff"))
    teacher = NerfTrainer.load_checkpoint(args.teacher, scene)
    student = NerdfTrainer(
        scene, NerdfConfig(teacher=args.teacher, steps=None, seconds=args.seconds, encoding=args.encoding)
    )
    student.train(progress=False)
    ev = student.evaluate()
    rows = [
        {"model": "teacher", "steps": teacher.step, "psnr": teacher.evaluate()["psnr"]},
        {"model": "nerdf", "teacher": "teacher", "steps": student.step, "train_s": student.train_seconds,
         "psnr": ev["psnr"], "psnr_vs_teacher": ev["psnr_vs_teacher"]},
    ]  # fmt: skip
    measure_fps({"teacher": teacher, "nerdf": student}, rows, args.fps_rounds)
    print(json.dumps(rows, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
