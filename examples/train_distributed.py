"""Data-parallel training with torch.distributed: launch it with torchrun.

Every process holds the whole model; each step's global batch (``--batch`` cameras for 3DGS,
rays for NeRF) is split across the processes, their gradients (and 3DGS's density statistics)
are summed, and every process takes the same step. Rank 0 alone writes ``--out``. Backend: gloo
on CPU, NCCL with ``--device cuda`` (one GPU per process).

Run (one machine, 2 processes)::

    torchrun --nproc_per_node 2 examples/train_distributed.py [DATA] --method gs --out runs/dist

Several machines: the same command on each, with ``--nnodes 2 --node_rank R
--rdzv_backend c10d --rdzv_endpoint HOST:29500`` (see the README). Without torchrun it trains in
one process. The same as ``torchrun ... -m raysplat train gs DATA --batch-cameras 4``.
"""

from __future__ import annotations

import argparse

import torch
from raysplat.datasets import sample_scene
from raysplat.training import distributed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="?", default=None, help="dataset directory (default: the sample scene)")
    ap.add_argument("--method", choices=("gs", "nerf"), default="gs")
    ap.add_argument("--out", default="runs/dist_example")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument(
        "--batch", type=int, default=None, help="cameras (gs, default 4) or rays (nerf, default 1024)"
    )
    ap.add_argument("--frames", type=int, default=0, help="turntable frames (0: no video)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (one GPU per process)")
    args = ap.parse_args()

    created = distributed.init_from_env(args.device)  # gloo on CPU, NCCL on CUDA
    try:
        torch.set_num_threads(1)
        # rank 0 renders the sample scene once; the others wait and read it
        data = args.data or distributed.run_on_main(sample_scene, "blender", progress=False)
        if args.method == "gs":
            from raysplat.gs import GSConfig, Trainer

            config = GSConfig.fast(steps=args.steps, device=args.device, batch_cameras=args.batch or 4)
        else:
            from raysplat.nerf import NerfConfig, Trainer

            config = NerfConfig(steps=args.steps, device=args.device, batch_rays=args.batch or 1024)
        trainer = Trainer(data, config)
        m = trainer.run(args.out, frames=args.frames, force=True, progress=distributed.is_main())
        if distributed.is_main():
            print(
                f"{args.method} on {distributed.world_size()} process(es): {m['steps']} steps in "
                f"{m['train_seconds']:.1f} s ({m['steps'] / max(m['train_seconds'], 1e-9):.1f} steps/s), "
                f"test PSNR {m['psnr']:.2f} dB -> {args.out}/"
            )
    except BaseException:
        distributed.shutdown(created)
        raise
    distributed.finish_worker(created)  # exits a torchrun worker once every output is written


if __name__ == "__main__":
    main()
