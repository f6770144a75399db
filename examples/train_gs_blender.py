"""Train 3D Gaussian splats on a Blender-layout scene on CPU.

With no path, the generated sample Blender scene (100 x 100, 100 train views, its surface points
as the initial Gaussians) is used. Writes ``gaussians.ply`` (standard 3DGS layout: opens in
common splat viewers), ``checkpoint.pt``, ``metrics.json``, ``renders/`` and ``turntable.gif``.

Run: ``.venv/bin/python examples/train_gs_blender.py [DATA] --out out/gs --steps 3000``
(about 2-3 minutes on 2 cores; the same as ``raysplat train gs DATA --out out/gs``).
"""

from __future__ import annotations

import argparse

import raysplat
import torch
from raysplat.datasets import load, sample_scene
from raysplat.gs import TrainConfig, Trainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="?", default=None, help="Blender dataset directory (default: the sample)")
    ap.add_argument("--out", default="out/gs_blender")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=2, help="Rust kernel threads")
    args = ap.parse_args()

    raysplat.set_num_threads(args.threads)
    torch.set_num_threads(1)  # torch's ops are tiny at this size; one thread is fastest
    path = args.data or sample_scene("blender", progress=True)
    # keep the alpha channel: training composites on a random background each step
    scene = load(path, background="none")
    trainer = Trainer(
        scene, TrainConfig.fast(steps=args.steps, device=args.device, eval_every=1000), out=args.out
    )
    print(f"{len(trainer.model)} initial Gaussians, scene extent {trainer.extent:.2f}")
    trainer.train()
    m = trainer.save()
    print(
        f"test PSNR {m['test_psnr']:.2f} dB, SSIM {m['test_ssim']:.4f}, {m['num_gaussians']} Gaussians, "
        f"{m['train_seconds']:.1f} s -> {args.out}/ (gaussians.ply, renders/, turntable.gif, metrics.json)"
    )


if __name__ == "__main__":
    main()
