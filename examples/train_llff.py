"""Train a NeRF on a forward-facing LLFF capture (NDC rays) and render its spiral path.

Run: ``python examples/train_llff.py [DATA] --sampler proposal --steps 2000 --out out/llff``
(without DATA it trains on raysplat's generated sample LLFF scene).
"""

from __future__ import annotations

import argparse
import json

import raysplat as rs
from raysplat.nerf import SAMPLERS, NerfConfig, Trainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="?", default=None, help="LLFF scene directory (default: sample scene)")
    ap.add_argument("--sampler", choices=SAMPLERS, default="occgrid")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default="out/llff")
    args = ap.parse_args()
    data = args.data or rs.datasets.sample_scene("llff", progress=True)
    trainer = Trainer(data, NerfConfig(sampler=args.sampler, steps=args.steps, device=args.device))
    m = trainer.run(args.out, video="spiral")
    print(json.dumps({k: m[k] for k in ("steps", "train_seconds", "test_psnr", "test_ssim")}))
    print(f"renders in {args.out}/renders (spiral.gif), metrics in {args.out}/metrics.json")


if __name__ == "__main__":
    main()
