"""Train a NeRF on a Blender-synthetic scene or a forward-facing LLFF capture.

Writes the shared run layout (checkpoint.pt, metrics.json, test/, video/turntable.gif + .mp4).
Without DATA it trains on raysplat's generated sample scene of ``--format``.

Run: ``python examples/train_nerf.py [DATA] --format llff --sampler proposal --steps 2000 --out runs/llff``
(the same as ``raysplat train nerf DATA --sampler proposal --steps 2000 --out runs/llff``).
"""

from __future__ import annotations

import argparse
import json

from raysplat.datasets import sample_scene
from raysplat.nerf import SAMPLERS, NerfConfig, Trainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="?", default=None, help="dataset directory (default: the sample scene)")
    ap.add_argument("--format", choices=("blender", "llff"), default="blender", help="sample scene format")
    ap.add_argument("--sampler", choices=SAMPLERS, default="occgrid")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--frames", type=int, default=40, help="turntable frames (0: no video)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default="runs/nerf_example")
    args = ap.parse_args()
    data = args.data or sample_scene(args.format, progress=True)
    trainer = Trainer(data, NerfConfig(sampler=args.sampler, steps=args.steps, device=args.device))
    m = trainer.run(args.out, frames=args.frames, force=True)
    print(json.dumps({k: m[k] for k in ("steps", "train_seconds", "psnr", "ssim", "render_ms_per_frame")}))
    print(f"test views in {args.out}/test, video in {args.out}/video, metrics in {args.out}/metrics.json")


if __name__ == "__main__":
    main()
