"""Train ProNeRF (projection-aware sampling, 8 or 12 field samples a ray) on a forward-facing LLFF
capture or a Blender scene, and print where the render time goes.

Writes the shared run layout (checkpoint.pt with the reference views it needs to render,
metrics.json with ``render_breakdown``, test/, video/). Without DATA it trains on raysplat's
generated sample scene of ``--format``.

Run: ``python examples/pronerf.py --format llff --samples 12 --steps 2000 --out runs/pronerf``
(the same as ``raysplat train nerf DATA --sampler pronerf --samples 12 --steps 2000 --out runs/pronerf``).
"""

from __future__ import annotations

import argparse
import json

from raysplat.datasets import sample_scene
from raysplat.nerf import NerfConfig, Trainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="?", default=None, help="dataset directory (default: the sample scene)")
    ap.add_argument("--format", choices=("blender", "llff"), default="llff", help="sample scene format")
    ap.add_argument("--samples", type=int, default=12, help="field samples a ray (8 or 12)")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--tiny", action="store_true", help="a small field and PAS networks (smoke tests)")
    ap.add_argument("--frames", type=int, default=40, help="turntable frames (0: no video)")
    ap.add_argument("--out", default="runs/pronerf_example")
    args = ap.parse_args()
    data = args.data or sample_scene(args.format, progress=True)
    small = dict(n_levels=8, log2_table=14, max_res=128, hidden=32, batch_rays=256, pronerf_width=32)
    cfg = NerfConfig(
        sampler="pronerf", pronerf_samples=args.samples, steps=args.steps, **(small if args.tiny else {})
    )
    trainer = Trainer(data, cfg)
    m = trainer.run(args.out, frames=args.frames, force=True)
    print(json.dumps({k: m[k] for k in ("steps", "train_seconds", "psnr", "ssim", "render_ms_per_frame")}))
    print("render time a frame:", json.dumps(m["render_breakdown"]))


if __name__ == "__main__":
    main()
