"""``make demo``: train the default NeRF on the generated sample Blender scene on CPU.

Generates (or reuses the cached) 100x100 sample Blender scene, trains the default hash-grid NeRF
with the occupancy-grid sampler for at most ``--minutes`` of wall time on the CPU, evaluates the
test views and writes renders, a turntable GIF + MP4, metrics.json and a checkpoint to ``--out``.

Run: ``python examples/nerf_demo.py --out out/nerf_demo``.
"""

from __future__ import annotations

import argparse
import time

import raysplat as rs
import torch
from raysplat.nerf import NerfConfig, Trainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="out/nerf_demo")
    ap.add_argument("--minutes", type=float, default=4.0, help="training time budget (default: 4)")
    ap.add_argument("--steps", type=int, default=3000, help="step cap (default: 3000)")
    ap.add_argument("--sampler", choices=rs.nerf.SAMPLERS, default="occgrid")
    ap.add_argument("--frames", type=int, default=40, help="turntable frames (default: 40)")
    ap.add_argument("--data", default=None, help="dataset directory (default: the sample Blender scene)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    data = args.data or rs.datasets.sample_scene("blender", progress=True)
    print(f"sample Blender scene: {data} ({time.perf_counter() - t0:.1f} s)")
    print(f"raysplat {rs.__version__}: training on CPU, {torch.get_num_threads()} torch threads")
    cfg = NerfConfig(sampler=args.sampler, steps=args.steps, seconds=args.minutes * 60)
    m = Trainer(data, cfg).run(args.out, frames=args.frames, force=True)
    print(
        f"\ntest PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.3f} after {m['steps']} steps / "
        f"{m['train_seconds']:.0f} s of training (mean-colour baseline {m['mean_color_psnr']:.2f} dB), "
        f"{m['render_ms_per_frame']:.0f} ms per test frame"
    )
    print(f"test views (prediction, ground truth): {args.out}/test/")
    print(f"turntable: {args.out}/video/turntable.gif and .mp4")
    print(f"metrics: {args.out}/metrics.json; checkpoint: {args.out}/checkpoint.pt")
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
