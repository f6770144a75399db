"""The ``raysplat`` command line.

Each subcommand is one ``_add_<name>(subparsers)`` function registering its parser with
``set_defaults(func=<handler>)``; a handler takes the parsed ``argparse.Namespace`` and returns
the exit status. To add a command (``train``, ``render``, ...) write both and append the adder to
:data:`COMMANDS`. Handlers import their heavy modules lazily so ``raysplat --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence


def _make_scene(args: argparse.Namespace) -> int:
    import time

    from raysplat.datasets.generate import make_scene

    t0 = time.perf_counter()
    out = make_scene(
        args.out,
        format=args.format,
        size=args.size,
        views=args.views,
        seed=args.seed,
        mesh=args.mesh,
        up=args.up,
        progress=not args.quiet,
        overwrite=args.force,
    )
    print(f"wrote a {args.format} scene to {out} in {time.perf_counter() - t0:.1f} s")
    return 0


def _add_make_scene(sub: argparse._SubParsersAction) -> None:
    from raysplat.datasets.generate import FORMATS

    p = sub.add_parser(
        "make-scene",
        help="render the procedural sample scene (or a mesh) in a dataset layout",
        description="Renders a deterministic textured scene and writes it exactly as a real "
        "dataset of the chosen format is laid out.",
    )
    p.add_argument("out", help="output directory (created; must be empty unless --force)")
    p.add_argument("--format", choices=FORMATS, default="blender", help="dataset layout (default: blender)")
    p.add_argument("--size", type=int, default=100, help="image width in pixels (default: 100)")
    p.add_argument(
        "--views",
        type=int,
        default=100,
        help="training views (blender/nerfstudio/colmap) or all views (llff)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (cameras, noise texture, points)")
    p.add_argument("--mesh", default=None, help="an OBJ / GLB / PLY mesh replacing the procedural objects")
    p.add_argument("--up", choices=("y", "z"), default="y", help="up axis of --mesh (default: y)")
    p.add_argument("--force", action="store_true", help="write into a non-empty output directory")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_make_scene)


def _train_gs(args: argparse.Namespace) -> int:
    import torch

    import raysplat
    from raysplat.datasets import detect_format, load
    from raysplat.gs import TrainConfig, Trainer

    if args.threads:
        raysplat.set_num_threads(args.threads)
    if args.device == "cpu":
        torch.set_num_threads(args.torch_threads)
    fmt = detect_format(args.data)
    scene = load(args.data, format=fmt, **({"background": "none"} if fmt == "blender" else {}))
    over = {"steps": args.steps, "device": args.device, "seed": args.seed, "eval_every": args.eval_every}
    if args.resume:
        trainer = Trainer.resume(scene, args.resume, out=args.out, **over)
    else:
        extra = {"sh_degree": args.sh_degree, "init": args.init, **over}
        cfg = TrainConfig.fast(**extra) if args.schedule == "fast" else TrainConfig(**extra)
        if args.max_gaussians:
            cfg.densify.max_gaussians = args.max_gaussians
        trainer = Trainer(scene, cfg, out=args.out)
    trainer.train(progress=not args.quiet)
    m = trainer.save(gif_frames=args.gif_frames)
    print(
        f"step {m['step']}: test PSNR {m['test_psnr']:.2f} dB, SSIM {m['test_ssim']:.4f}, "
        f"{m['num_gaussians']} Gaussians, {m['train_seconds']:.1f} s training -> {args.out}"
    )
    return 0


def _add_train_gs(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "gs",
        help="train 3D Gaussian splats",
        description="Trains 3D Gaussian splatting (3DGS: L1 + D-SSIM, adaptive density control) on a "
        "Blender / nerfstudio / COLMAP / LLFF dataset and writes gaussians.ply (standard 3DGS layout), "
        "checkpoint.pt, metrics.json, renders/ and turntable.gif to --out.",
    )
    p.add_argument("data", help="dataset directory")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--steps", type=int, default=3000, help="training steps, one image each (default: 3000)")
    p.add_argument(
        "--schedule",
        choices=("fast", "3dgs"),
        default="fast",
        help="fast: densify from step 100 to 60%% of the run, SH degree +1 every 500 steps; "
        "3dgs: the paper's (densify 500..15000, opacity reset every 3000) (default: fast)",
    )
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--sh-degree", type=int, choices=(0, 1, 2, 3), default=3, help="maximum SH degree")
    p.add_argument(
        "--init",
        default="auto",
        help="auto, points, random or a PLY (point cloud or Gaussians) (default: auto)",
    )
    p.add_argument("--max-gaussians", type=int, default=0, help="stop densifying above this many (0: no cap)")
    p.add_argument("--eval-every", type=int, default=0, help="evaluate on the test views every N steps")
    p.add_argument("--gif-frames", type=int, default=40, help="turntable GIF frames (0: no GIF)")
    p.add_argument("--threads", type=int, default=0, help="threads of the Rust kernels (default: all cores)")
    p.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch intra-op threads on CPU (default: 1; the ops are small)",
    )
    p.add_argument(
        "--resume", default=None, help="continue from a checkpoint.pt (same data; --steps sets the new end)"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_train_gs)


def _config_from(args: argparse.Namespace):
    from raysplat.nerf import NerfConfig

    return NerfConfig(
        sampler=args.sampler,
        steps=args.steps,
        device=args.device,
        seed=args.seed,
        progress=not args.quiet,
    )


def _train_nerf(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from raysplat.nerf import Trainer

    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ValueError("--device cuda: no CUDA device is available")
    out = Path(args.out)
    if args.resume:
        trainer = Trainer.load_checkpoint(args.resume, args.data, steps=args.steps, progress=not args.quiet)
    else:
        trainer = Trainer(args.data, _config_from(args))
    m = trainer.run(out, video=None if args.no_video else "turntable", frames=args.frames)
    summary = {k: m[k] for k in ("sampler", "steps", "train_seconds", "test_psnr", "test_ssim")}
    print(json.dumps(summary))
    print(f"checkpoint: {out / 'ckpt.pt'}; metrics: {out / 'metrics.json'}; renders: {out / 'renders'}")
    return 0


def _add_train_nerf(sub: argparse._SubParsersAction) -> None:
    from raysplat.nerf import SAMPLERS

    p = sub.add_parser(
        "nerf",
        help="train a radiance field",
        description="Trains a radiance field on a dataset, evaluates it on the test views and writes "
        "ckpt.pt, metrics.json and renders/ (test views, a turntable GIF) to --out.",
    )
    p.add_argument("data", help="dataset directory (blender / llff / nerfstudio / colmap)")
    p.add_argument(
        "--sampler", choices=SAMPLERS, default="occgrid", help="sample placement (default: occgrid)"
    )
    p.add_argument("--steps", type=int, default=2000, help="optimisation steps (default: 2000)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--out", default="out/nerf", help="output directory (default: out/nerf)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--resume", default=None, help="continue from this checkpoint up to --steps")
    p.add_argument("--frames", type=int, default=40, help="turntable frames (default: 40)")
    p.add_argument("--no-video", action="store_true", help="skip the turntable GIF")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_train_nerf)


def _render(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from raysplat.nerf import Trainer

    trainer = Trainer.load_checkpoint(args.ckpt, args.data, progress=False)
    out = Path(args.out)
    if args.path == "test" and trainer.scene is not None:
        ev = trainer.evaluate("test", out)
        print(json.dumps({k: round(v, 4) for k, v in ev.items() if k in ("psnr", "ssim")}))
    gif = trainer.render_path(args.path, out, frames=args.frames)
    print(f"wrote {gif} and its frames")
    return 0


def _add_render(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "render",
        help="render a camera path from a trained checkpoint",
        description="Renders a trained NeRF checkpoint along a camera path (PNG frames + GIF). "
        "With --path test and the dataset available, also prints test PSNR / SSIM.",
    )
    p.add_argument("ckpt", help="checkpoint written by `raysplat train`")
    p.add_argument("--path", choices=("spiral", "turntable", "test"), default="turntable")
    p.add_argument("--out", default="out/render", help="output directory (default: out/render)")
    p.add_argument("--frames", type=int, default=60, help="frames of spiral / turntable (default: 60)")
    p.add_argument("--data", default=None, help="dataset directory (default: the one trained on)")
    p.set_defaults(func=_render)


#: ``raysplat train`` models, each an ``_add_train_<model>(subparsers)`` like :data:`COMMANDS`
TRAIN_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_train_gs, _add_train_nerf]


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model on a dataset", description="Trains a model on a dataset.")
    models = p.add_subparsers(dest="model", metavar="MODEL")
    models.required = True
    for add in TRAIN_COMMANDS:
        add(models)


#: subcommand registrars, in the order ``--help`` lists them
COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_make_scene, _add_train, _add_render]


def build_parser() -> argparse.ArgumentParser:
    """The ``raysplat`` argument parser with every subcommand of :data:`COMMANDS`."""
    from raysplat import __version__

    parser = argparse.ArgumentParser(
        prog="raysplat", description="raysplat: neural rendering on CPU and GPU."
    )
    parser.add_argument("--version", action="version", version=f"raysplat {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit status.
    Errors in the inputs (missing files, malformed datasets, bad values) print one line to
    stderr and return 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileExistsError, FileNotFoundError) as e:
        print(f"raysplat {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
