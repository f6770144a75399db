"""``make demo``: train the default NeRF on the generated sample Blender scene on CPU.

Generates (or reuses the cached) 100x100 sample Blender scene, trains the default hash-grid NeRF
with the occupancy-grid sampler for at most ``--minutes`` of wall time on the CPU, evaluates the
test views and writes renders, a turntable GIF, metrics.json and a checkpoint to ``--out``.

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
    args = ap.parse_args()
    t0 = time.perf_counter()
    data = rs.datasets.sample_scene("blender", progress=True)
    print(f"sample Blender scene: {data} ({time.perf_counter() - t0:.1f} s)")
    print(f"raysplat {rs.__version__}: training on CPU, {torch.get_num_threads()} torch threads")
    cfg = NerfConfig(sampler=args.sampler, steps=args.steps, max_seconds=args.minutes * 60)
    m = Trainer(data, cfg).run(args.out, video="turntable")
    print(
        f"\ntest PSNR {m['test_psnr']:.2f} dB, SSIM {m['test_ssim']:.3f} after {m['steps']} steps / "
        f"{m['train_seconds']:.0f} s of training (mean-colour baseline {m['mean_color_psnr']:.2f} dB)"
    )
    print(f"renders (render | ground truth): {args.out}/renders/test_*.png")
    print(f"turntable: {m['video']}")
    print(f"metrics: {args.out}/metrics.json; checkpoint: {args.out}/ckpt.pt")
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
