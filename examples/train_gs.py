"""Train 3D Gaussian splats on CPU.

With no path, the generated sample Blender scene (100 x 100, 100 train views, its surface points
as the initial Gaussians) is used. Writes the shared run layout plus ``gaussians.ply`` (standard
3DGS layout: opens in common splat viewers).

Run: ``.venv/bin/python examples/train_gs.py [DATA] --out runs/gs --steps 3000``
(about 2-3 minutes on 2 cores; the same as ``raysplat train gs DATA --out runs/gs``).
"""

from __future__ import annotations

import argparse

import raysplat
import torch
from raysplat.datasets import sample_scene
from raysplat.gs import GSConfig, Trainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="?", default=None, help="dataset directory (default: the sample scene)")
    ap.add_argument("--out", default="runs/gs_example")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--frames", type=int, default=40, help="turntable frames (0: no video)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=2, help="Rust kernel threads")
    args = ap.parse_args()

    raysplat.set_num_threads(args.threads)
    torch.set_num_threads(1)  # torch's ops are tiny at this size; one thread is fastest
    data = args.data or sample_scene("blender", progress=True)
    config = GSConfig.fast(steps=args.steps, device=args.device, eval_every=1000)
    trainer = Trainer(data, config)  # a path keeps the alpha channel: random backgrounds in training
    print(f"{len(trainer.model)} initial Gaussians, scene extent {trainer.extent:.2f}")
    m = trainer.run(args.out, frames=args.frames, force=True)
    print(
        f"test PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.4f}, {m['num_gaussians']} Gaussians, "
        f"{m['train_seconds']:.1f} s -> {args.out}/ (gaussians.ply, test/, video/, metrics.json)"
    )


if __name__ == "__main__":
    main()
