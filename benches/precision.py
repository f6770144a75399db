"""Mixed precision (``config.precision``): speed and quality of fp32 vs bf16 vs fp16.

NeRF (occupancy grid) on the sample Blender scene (100x100): the same seeded run of ``--steps``
steps at each precision; reports steps per wall second and per CPU second (CPU time / threads:
an idle-machine estimate on a shared machine) and the test PSNR after the run. Then NeRDF's
networks alone: forward + backward of ``--rays`` rays (both inputs), ms per call.

Run: ``python benches/precision.py`` (CPU, the Rust kernels), ``--device cuda`` on a GPU.
On CPU this measures the cost of autocast where the hardware has no fast 16-bit matmul; the
speed-up mixed precision exists for (tensor cores) needs a GPU.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import raysplat as rs
import torch
from raysplat.nerf import NerfConfig, Trainer, load_scene

PRECISIONS = ("fp32", "bf16", "fp16")


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def bench_nerf(args, dev: torch.device) -> list[dict]:
    scene = load_scene(rs.datasets.sample_scene("blender"))
    rows = []
    for prec in args.precisions:
        cfg = NerfConfig(steps=args.steps, device=str(dev), precision=prec, eval_views=args.eval_views)
        trainer = Trainer(scene, cfg)
        _sync(dev)
        t0, c0 = time.perf_counter(), time.process_time()
        trainer.train(progress=False)
        _sync(dev)
        wall, cpu = time.perf_counter() - t0, (time.process_time() - c0) / args.threads
        ev = trainer.evaluate()
        row = {
            "case": f"nerf occgrid {args.steps} steps",
            "precision": prec,
            "steps_per_s": args.steps / wall,
            "steps_per_cpu_s": args.steps / cpu,
            "psnr": ev["psnr"],
        }
        print(
            f"nerf      {prec:5s} {row['steps_per_s']:8.2f} steps/s {row['steps_per_cpu_s']:8.2f} "
            f"steps/CPU-s  PSNR {row['psnr']:.2f} dB",
            flush=True,
        )
        rows.append(row)
    return rows


def bench_nerdf(args, dev: torch.device) -> list[dict]:
    from raysplat.nerdf.model import NerdfHashNetwork, NerdfNetwork, input_dim, ray_input, ray_points
    from raysplat.training.precision import set_network_precision

    g = torch.Generator().manual_seed(0)
    o = torch.randn(args.rays, 3, generator=g).to(dev)
    d = torch.nn.functional.normalize(torch.randn(args.rays, 3, generator=g), dim=-1).to(dev)
    rows = []
    for encoding in ("pe", "hashgrid"):
        if encoding == "pe":
            net = NerdfNetwork(input_dim(), 128, 8, generator=g).to(dev)
            inputs = (ray_input(o, d, d, 0.5, 4.0),)
        else:
            net = NerdfHashNetwork([-4.0] * 3 + [4.0] * 3, None, generator=g).to(dev)
            inputs = (ray_points(o, d, 0.5, 4.0), d)
        for prec in args.precisions:
            set_network_precision(net, prec)
            times = []
            for i in range(args.repeats + 1):
                net.zero_grad(set_to_none=True)
                _sync(dev)
                t0 = time.perf_counter()
                net(*inputs).square().mean().backward()
                _sync(dev)
                if i:  # the first call warms up
                    times.append(time.perf_counter() - t0)
            row = {"case": f"nerdf {encoding} {args.rays} rays fwd+bwd", "precision": prec,
                   "median_ms": 1e3 * sorted(times)[len(times) // 2]}  # fmt: skip
            print(f"nerdf {encoding:8s} {prec:5s} {row['median_ms']:8.1f} ms", flush=True)
            rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=300, help="NeRF steps per precision (default 300)")
    ap.add_argument("--eval-views", type=int, default=4, help="test views scored (default 4)")
    ap.add_argument("--rays", type=int, default=2048, help="rays per NeRDF call (default 2048)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    ap.add_argument("--no-nerf", action="store_true")
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rs.set_num_threads(args.threads)
    dev = torch.device(args.device)
    print(f"raysplat {rs.__version__}, torch {torch.__version__}, device {dev}, {args.threads} thread(s)")
    rows = [] if args.no_nerf else bench_nerf(args, dev)
    rows += bench_nerdf(args, dev)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
