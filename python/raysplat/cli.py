"""The ``raysplat`` command line.

Each subcommand is one ``_add_<name>(subparsers)`` function registering its parser with
``set_defaults(func=<handler>)``; a handler takes the parsed ``argparse.Namespace`` and returns
the exit status. To add a command (``train``, ``render``, ...) write both and append the adder to
:data:`COMMANDS`. Handlers import their heavy modules lazily so ``raysplat --help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from raysplat._extras import MissingExtraError


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


# ----------------------------------------------------------------------------- shared flags


def _nonneg_int(text: str) -> int:
    v = int(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


def _pos_int(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def _pos_float(text: str) -> float:
    v = float(text)
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {v}")
    return v


def add_run_flags(p: argparse.ArgumentParser, method: str, default_steps: int | None) -> None:
    """The flags every training / generation command shares (one name, one meaning)."""
    steps = f"default: {default_steps}" if default_steps else "default: the method's"
    p.add_argument(
        "--out",
        default=f"runs/{method}",
        help=f"output directory (default: runs/{method}); refused when not empty unless --force or --resume",
    )
    p.add_argument(
        "--steps",
        type=_nonneg_int,
        default=None,
        help=f"training steps, a total ({steps}; unbounded when only --seconds is given)",
    )
    p.add_argument("--seconds", type=_pos_float, default=None, help="training time budget in seconds")
    p.add_argument("--resume", default=None, help="continue from this checkpoint.pt (same data)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16", "fp16"),
        default=None,
        help="precision of the networks: fp32 (default), bf16 or fp16 (torch.autocast, fp16 with "
        "loss scaling; rendering and losses stay fp32). NeRF, NeRDF, text-to-3D; 3DGS is fp32 only",
    )
    p.add_argument(
        "--threads",
        type=_pos_int,
        default=None,
        help="threads of the Rust kernels and of torch (default: all cores for Rust)",
    )
    p.add_argument(
        "--frames", type=_nonneg_int, default=40, help="turntable video frames (0: no video; default: 40)"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--force", action="store_true", help="write into a non-empty --out")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set any config field (JSON value), e.g. --set lr=0.005; repeatable",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")


def add_data_flags(p: argparse.ArgumentParser) -> None:
    """The dataset flags of reconstruction methods."""
    from raysplat.training.data import BACKGROUNDS

    p.add_argument("data", help="dataset directory (blender / llff / nerfstudio / colmap)")
    p.add_argument("--downscale", type=_pos_int, default=None, help="image downscale factor")
    p.add_argument(
        "--holdout",
        type=_nonneg_int,
        default=None,
        help="every N-th image is a test view (llff / colmap / nerfstudio; default: 8)",
    )
    p.add_argument(
        "--background",
        choices=BACKGROUNDS,
        default=None,
        help="transparent pixels: none keeps alpha for background augmentation (default)",
    )


def parse_sets(items: list[str]) -> dict:
    """``["lr=0.005", "sampler=proposal"]`` -> ``{"lr": 0.005, "sampler": "proposal"}``."""
    import json

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def set_threads(args: argparse.Namespace, torch_default: int | None = None) -> None:
    """Applies ``--threads`` to the Rust pool and torch (``torch_default``: torch's count when
    ``--threads`` is not given). Under torchrun with several processes per machine and no
    ``--threads``, each process's Rust pool gets its share of the cores (torchrun already sets
    ``OMP_NUM_THREADS=1`` for torch)."""

    import torch

    from raysplat.parallel import set_num_threads

    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if args.threads:
        set_num_threads(args.threads)
        torch.set_num_threads(args.threads)
    else:
        if local_world > 1 and "RAYSPLAT_NUM_THREADS" not in os.environ:
            set_num_threads(max((os.cpu_count() or 1) // local_world, 1))
        if torch_default:
            torch.set_num_threads(torch_default)


def budget(args: argparse.Namespace) -> dict:
    """The budget flags the user gave, as config fields."""
    return {k: getattr(args, k) for k in ("steps", "seconds") if getattr(args, k) is not None}


def precision(args: argparse.Namespace) -> dict:
    """``--precision`` when the user gave it, as a config field."""
    return {} if getattr(args, "precision", None) is None else {"precision": args.precision}


def run_training(args: argparse.Namespace, method: str, make_config) -> int:
    """The ``train <method>`` flow: load the data, build the config (``make_config(args)``) or
    resume, train, write the outputs, print one summary line.

    Launched by ``torchrun --nproc_per_node N -m raysplat train ...`` it trains data-parallel
    (:mod:`raysplat.training.distributed`: NCCL for ``--device cuda``, one GPU per process;
    gloo on CPU); rank 0 alone prepares ``--out``, shows progress and writes the outputs."""
    from raysplat.training import distributed

    created = distributed.init_from_env(args.device)
    try:
        rc = _run_training(args, method, make_config)
    except BaseException:
        distributed.shutdown(created)
        raise
    # a torchrun worker ends here, with its real exit status (see distributed.finish_worker)
    return distributed.finish_worker(created, rc)


def _run_training(args: argparse.Namespace, method: str, make_config) -> int:
    from raysplat.training import distributed, load_scene, outputs, read_checkpoint, trainer_class

    cls = trainer_class(method)
    if args.resume:
        ck = read_checkpoint(args.resume)
        if ck["method"] != method:
            raise ValueError(f"--resume {args.resume}: a {ck['method']} checkpoint, not {method}")
    scene = load_scene(args.data, downscale=args.downscale, holdout=args.holdout, background=args.background)
    if args.resume:
        over = {**budget(args), **precision(args), "device": args.device, **parse_sets(args.set)}
        trainer = cls.load_checkpoint(args.resume, scene, **over)
        out = distributed.run_on_main(outputs.prepare_dir, args.out, force=True)
    else:
        config = make_config(args)
        out = distributed.run_on_main(outputs.prepare_dir, args.out, force=args.force)
        trainer = cls(scene, config)
    trainer.train(progress=not args.quiet)
    m = trainer.write_outputs(out, frames=args.frames)
    if not distributed.is_main():
        return 0
    world = distributed.world_size()
    psnr = "n/a" if m["psnr"] is None else f"{m['psnr']:.2f} dB"
    ssim = "n/a" if m["ssim"] is None else f"{m['ssim']:.4f}"
    print(
        f"{method}: {m['steps']} steps in {m['train_seconds']:.1f} s, test PSNR {psnr}, SSIM {ssim}, "
        f"{m['render_ms_per_frame'] or 0:.0f} ms/frame"
        + (f", {world} processes" if world > 1 else "")
        + f" -> {out}"
    )
    return 0


# ----------------------------------------------------------------------------------- train gs


def _gs_config(args: argparse.Namespace):
    from raysplat.gs import GSConfig

    kw = {
        "device": args.device,
        "seed": args.seed,
        "sh_degree": args.sh_degree,
        "batch_cameras": args.batch_cameras,
        "init": args.init,
        "eval_every": args.eval_every,
        **budget(args),
        **precision(args),
    }
    if args.schedule == "fast":
        steps = kw.pop("steps", None)
        cfg = GSConfig.fast(steps if steps is not None else (None if args.seconds else 3000), **kw)
    else:
        cfg = GSConfig(**kw)
    if args.max_gaussians:
        cfg.densify.max_gaussians = args.max_gaussians
    sets = parse_sets(args.set)
    return cfg.replace(**sets) if sets else cfg


def _train_gs(args: argparse.Namespace) -> int:
    set_threads(args, torch_default=1)
    return run_training(args, "gs", _gs_config)


def _add_train_gs(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "gs",
        help="train 3D Gaussian splats",
        description="Trains 3D Gaussian splatting (3DGS: L1 + D-SSIM, adaptive density control) on a "
        "dataset and writes checkpoint.pt, metrics.json, test/, video/ and gaussians.ply (standard 3DGS "
        "layout) to --out.",
    )
    add_data_flags(p)
    add_run_flags(p, "gs", 3000)
    p.add_argument(
        "--schedule",
        choices=("fast", "3dgs"),
        default="fast",
        help="fast: densify from step 100 to 60%% of the run, SH degree +1 every 500 steps; "
        "3dgs: the paper's (densify 500..15000, opacity reset every 3000) (default: fast)",
    )
    p.add_argument("--sh-degree", type=int, choices=(0, 1, 2, 3), default=3, help="maximum SH degree")
    p.add_argument(
        "--batch-cameras",
        type=_pos_int,
        default=1,
        help="training views per step, all processes together under torchrun (default: 1)",
    )
    p.add_argument("--init", default="auto", help="auto, points, random or a PLY (point cloud or Gaussians)")
    p.add_argument(
        "--max-gaussians", type=_nonneg_int, default=0, help="stop densifying above this many (0: no cap)"
    )
    p.add_argument(
        "--eval-every", type=_nonneg_int, default=0, help="evaluate on the test views every N steps"
    )
    p.set_defaults(func=_train_gs)


# --------------------------------------------------------------------------------- train nerf


def _nerf_config(args: argparse.Namespace):
    from raysplat.nerf import NerfConfig

    kw = {"sampler": args.sampler, "device": args.device, "seed": args.seed}
    kw.update(budget(args), **precision(args))
    if args.samples is not None:
        if args.sampler != "pronerf":
            raise ValueError(
                f"--samples is the pronerf sampler's sample count; the {args.sampler} sampler takes "
                "its counts from --set (e.g. --set n_coarse=32 n_fine=48)"
            )
        kw["pronerf_samples"] = args.samples
    if args.refine is not None:
        if args.sampler != "pronerf":
            raise ValueError(f"--refine is the pronerf sampler's refinement stage; not for {args.sampler}")
        kw["pronerf_refine"] = args.refine
    return NerfConfig.from_dict({**kw, **parse_sets(args.set)})


def _train_nerf(args: argparse.Namespace) -> int:
    set_threads(args)
    return run_training(args, "nerf", _nerf_config)


def _add_train_nerf(sub: argparse._SubParsersAction) -> None:
    from raysplat.nerf import SAMPLERS

    p = sub.add_parser(
        "nerf",
        help="train a radiance field",
        description="Trains a hash-grid radiance field on a dataset, evaluates it on the test views and "
        "writes checkpoint.pt, metrics.json, test/ and video/ to --out.",
    )
    add_data_flags(p)
    add_run_flags(p, "nerf", 2000)
    p.add_argument(
        "--sampler", choices=SAMPLERS, default="occgrid", help="sample placement (default: occgrid)"
    )
    p.add_argument(
        "--samples",
        type=int,
        default=None,
        help="field samples a ray of the pronerf sampler (ProNeRF-8 / ProNeRF-12; default 12); "
        "an error with other samplers",
    )
    p.add_argument(
        "--refine",
        type=float,
        default=None,
        metavar="SHARE",
        help="share of the budget in ProNeRF's refinement stage at the end (e.g. 0.25; default 0: "
        "none); an error with other samplers",
    )
    p.set_defaults(func=_train_nerf)


# -------------------------------------------------------------------------------- train nerdf


def _nerdf_config(args: argparse.Namespace):
    from raysplat.nerdf import NerdfConfig

    kw = {"teacher": args.teacher, "device": args.device, "seed": args.seed}
    kw.update(budget(args), **precision(args))
    return NerdfConfig.from_dict({**kw, **parse_sets(args.set)})


def _train_nerdf(args: argparse.Namespace) -> int:
    from pathlib import Path

    if not args.resume and not Path(args.teacher or "").is_file():
        raise ValueError(f"--teacher {args.teacher}: no such NeRF checkpoint")
    set_threads(args)
    return run_training(args, "nerdf", _nerdf_config)


def _add_train_nerdf(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "nerdf",
        help="distil a radiance-distribution field (NeRDF) from a trained NeRF",
        description="Distils a NeRDF (one network pass per ray, Fourier distributions of density and "
        "colour along it) from a NeRF checkpoint with online random views, evaluates it on the test views "
        "and writes checkpoint.pt, metrics.json, test/ and video/ to --out.",
    )
    add_data_flags(p)
    add_run_flags(p, "nerdf", 3000)
    p.add_argument("--teacher", default=None, help="the teacher NeRF checkpoint (raysplat train nerf)")
    p.set_defaults(func=_train_nerdf)


# ------------------------------------------------------------------------------------- render


def _render_ply(args: argparse.Namespace):
    """Frames of an orbit around a Gaussian PLY (no cameras in the file: the orbit is fitted to
    the Gaussians' extent)."""
    import torch

    from raysplat.cameras import c2w_to_viewmat, intrinsics, orbit
    from raysplat.gs.ply import load_ply

    if args.path == "test":
        raise ValueError("--path test needs a checkpoint (a PLY has no test cameras)")
    model = load_ply(args.model)
    means = model.means.detach()
    lo, hi = torch.quantile(means, 0.02, dim=0), torch.quantile(means, 0.98, dim=0)
    centre, radius = (lo + hi) / 2, float((hi - lo).norm()) * 1.2 + 1e-6
    up = {"x": (1.0, 0, 0), "y": (0, 1.0, 0), "z": (0, 0, 1.0), "-y": (0, -1.0, 0), "-z": (0, 0, -1.0)}[
        args.up
    ]
    c2w = orbit(centre, radius, 20.0, args.frames, up).float()
    w, h = args.size
    K = intrinsics(w, h, 40.0)
    bg = torch.ones(1, 3)
    for c in c2w:
        img, _, _ = model.render(c2w_to_viewmat(c[None]), K[None], w, h, backgrounds=bg)
        yield img[0].clamp(0, 1)


def _render(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from raysplat.training import load_checkpoint, outputs

    set_threads(args)
    out = outputs.prepare_dir(args.out, force=args.force)
    src = Path(args.model)
    if not src.is_file():
        raise FileNotFoundError(f"{src}: no such checkpoint or PLY file")
    if src.suffix.lower() == ".ply":
        frames = list(_render_ply(args))
    else:
        trainer = load_checkpoint(src, args.data, device=args.device)
        if args.path == "test" and trainer.test_views():
            ev = trainer.evaluate(return_images=True)
            for v in ev["views"]:
                outputs.save_image(out / outputs.TEST_DIR / f"{v['index']:04d}_pred.png", v["image"])
                outputs.save_image(out / outputs.TEST_DIR / f"{v['index']:04d}_gt.png", v["target"])
            print(json.dumps({k: ev[k] for k in ("psnr", "ssim", "render_ms_per_frame")}))
        c2w, K, w, h = trainer.camera_path(args.path, args.frames)
        frames = [trainer.render(c[None], K, w, h)[0] for c in c2w]
    for j, f in enumerate(frames):
        outputs.save_image(out / "frames" / f"{j:04d}.png", f)
    paths = outputs.save_video(out / outputs.VIDEO_DIR / args.path, frames)
    print(f"wrote {len(frames)} frames to {out / 'frames'} and {', '.join(str(p) for p in paths)}")
    return 0


def _add_render(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "render",
        help="render a camera path from a checkpoint or a 3DGS PLY",
        description="Renders any method's checkpoint.pt (the method is read from the file) along a camera "
        "path, or any standard 3DGS PLY along an orbit: PNG frames, GIF and MP4. With --path test and the "
        "dataset available, also writes the test views and prints PSNR / SSIM.",
    )
    p.add_argument("model", help="a checkpoint.pt written by raysplat, or a 3DGS .ply")
    p.add_argument("--path", choices=("turntable", "spiral", "test"), default="turntable")
    p.add_argument("--out", default="runs/render", help="output directory (default: runs/render)")
    p.add_argument("--force", action="store_true", help="write into a non-empty --out")
    p.add_argument("--frames", type=_pos_int, default=60, help="frames of spiral / turntable (default: 60)")
    p.add_argument("--data", default=None, help="dataset directory (default: the one trained on)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    p.add_argument("--threads", type=_pos_int, default=None, help="threads of the Rust kernels and torch")
    p.add_argument(
        "--size",
        type=_pos_int,
        nargs=2,
        default=(512, 384),
        metavar=("W", "H"),
        help="image size for a PLY (default: 512 384)",
    )
    p.add_argument(
        "--up", choices=("x", "y", "z", "-y", "-z"), default="z", help="up axis of a PLY (default: z)"
    )
    p.set_defaults(func=_render)


# ----------------------------------------------------------------------------------- text-to-3d


def _text_to_3d(args: argparse.Namespace) -> int:
    from raysplat.text3d import Text3DConfig, Trainer
    from raysplat.training import outputs, read_checkpoint

    set_threads(args)
    prompt = args.prompt
    if args.prior.startswith("mixture:"):
        name = args.prior[len("mixture:") :]
        if not name:
            raise ValueError("--prior mixture:NAME needs a target name (e.g. mixture:shapes)")
        prompt = prompt or name
    elif args.prior.startswith("mesh:"):
        prompt = prompt or "mesh"
    if args.resume:
        ck = read_checkpoint(args.resume)
        if ck["method"] != Trainer.method:
            raise ValueError(f"--resume {args.resume}: a {ck['method']} checkpoint, not text3d")
        over = {**budget(args), **precision(args), "device": args.device, **parse_sets(args.set)}
        trainer = Trainer.load_checkpoint(args.resume, args.prior, **over)
        out = outputs.prepare_dir(args.out, force=True)
    else:
        if not prompt:
            raise ValueError("prompt: a text prompt is required")
        fields = {
            "prompt": prompt,
            "prior": args.prior,
            "method": args.method,
            "representation": args.repr,
            "seed": args.seed,
            "device": args.device,
            **budget(args),
            **precision(args),
            **parse_sets(args.set),
        }
        for key in ("n_particles", "guidance_scale"):
            if getattr(args, key) is not None:
                fields[key] = getattr(args, key)
        config = Text3DConfig.from_dict(fields)
        out = outputs.prepare_dir(args.out, force=args.force)
        trainer = Trainer(args.prior, prompt, config)
    trainer.train(progress=not args.quiet)
    m = trainer.write_outputs(out, frames=args.frames)
    psnr = "n/a" if m["psnr"] is None else f"{m['psnr']:.2f} dB"
    print(
        f"text3d ({trainer.config.method}, {trainer.config.representation}): {m['steps']} steps in "
        f"{m['train_seconds']:.1f} s, held-out PSNR {psnr} -> {out}"
    )
    return 0


def _add_text_to_3d(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "text-to-3d",
        help="generate a 3D model from a prompt by score distillation (SDS / VSD)",
        description="Optimises a NeRF or 3D Gaussians so that renders from random cameras satisfy a "
        "diffusion prior: a Stable Diffusion directory in the diffusers layout (or a hub id), 'tiny' (a "
        "random tiny SD for tests), 'mixture:NAME' (an analytic Gaussian-mixture prior) or 'mesh:PATH' / "
        "'mesh:sample' (renders of a textured mesh). Writes checkpoint.pt, metrics.json, the turntable "
        "GIF and MP4 and mesh.glb (NeRF) or gaussians.ply (GS).",
    )
    p.add_argument("prompt", nargs="?", default="", help="the text prompt (analytic priors: a target name)")
    p.add_argument("--prior", required=True, help="PATH | tiny | mixture:NAME | mesh:PATH")
    p.add_argument("--method", choices=("sds", "vsd"), default="sds")
    p.add_argument("--repr", choices=("nerf", "gs"), default="nerf", help="3D representation (default: nerf)")
    p.add_argument("--particles", dest="n_particles", type=_pos_int, default=None, help="VSD particles")
    p.add_argument("--guidance-scale", type=_pos_float, default=None, help="CFG (default: 100 SDS, 7.5 VSD)")
    add_run_flags(p, "text3d", None)
    p.set_defaults(func=_text_to_3d)


def _texture(args: argparse.Namespace) -> int:
    from raysplat.texgen import TexGenConfig
    from raysplat.texgen.run import texture_mesh

    set_threads(args)
    fields = {
        "method": args.method,
        "views": args.views,
        "seed": args.seed,
        "negative_prompt": args.negative_prompt,
        **parse_sets(args.set),
    }
    for key in ("steps", "texture_size", "image_size", "eta", "guidance_scale"):
        if getattr(args, key) is not None:
            fields[key] = getattr(args, key)
    if "elevations" in fields:
        fields["elevations"] = tuple(fields["elevations"])
    known = set(TexGenConfig.__dataclass_fields__)
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(f"--set: unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    cfg = TexGenConfig(**fields)
    m = texture_mesh(
        args.mesh,
        args.prompt,
        args.prior,
        args.out,
        config=cfg,
        reference=args.reference,
        frames=args.frames,
        force=args.force,
        device=args.device,
        controlnet=args.controlnet,
        progress=not args.quiet,
        precision=args.precision,
    )
    cons = "n/a" if m["consistency_psnr"] is None else f"{m['consistency_psnr']:.2f} dB"
    print(
        f"texture ({m['method']}): {m['views']} views x {m['steps']} steps in {m['train_seconds']:.1f} s, "
        f"coverage {m['coverage']:.2f}, cross-view consistency {cons} -> {args.out}"
    )
    return 0


def _add_texture(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "texture",
        help="texture a mesh from a prompt (TexGen multi-view sampling and resampling)",
        description="Generates a UV texture for MESH (OBJ / GLB / PLY; its UVs or an xatlas unwrap) with a "
        "diffusion prior: a Stable Diffusion directory in the diffusers layout (a depth ControlNet from "
        "DIR/controlnet/ or --controlnet) or 'tiny' (a random tiny SD with a tiny ControlNet, for tests). "
        "Writes textured.glb (embedded PNG), textured.obj/.mtl/.png, video/turntable.gif/.mp4 and "
        "metrics.json.",
    )
    p.add_argument("mesh", help="the mesh file")
    p.add_argument("prompt", help="the text prompt")
    p.add_argument("--prior", required=True, help="PATH | tiny")
    p.add_argument("--controlnet", default=None, help="a diffusers depth ControlNet directory")
    p.add_argument("--method", choices=("texgen", "sequential", "independent"), default="texgen")
    p.add_argument("--views", type=_pos_int, default=6, help="views around the mesh (default: 6)")
    p.add_argument("--steps", type=_pos_int, default=None, help="DDIM steps (default: 20)")
    p.add_argument("--eta", type=float, default=None, help="DDIM eta (default: 0)")
    p.add_argument("--guidance-scale", type=_pos_float, default=None, help="text CFG weight (default: 7.5)")
    p.add_argument("--negative-prompt", default="", help="the negative prompt (default: empty)")
    p.add_argument("--texture-size", type=_pos_int, default=None, help="texture size, a power of two (256)")
    p.add_argument("--image-size", type=_pos_int, default=None, help="view size in pixels (default: 64)")
    p.add_argument("--reference", default=None, help="a reference texture PNG: metrics get psnr / ssim")
    p.add_argument("--out", default="runs/texture", help="output directory (default: runs/texture)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16", "fp16"),
        default="fp32",
        help="dtype of the prior's networks (default fp32; fp16 / bf16 halve its memory on GPUs)",
    )
    p.add_argument("--threads", type=_pos_int, default=None, help="threads of the Rust kernels and torch")
    p.add_argument("--frames", type=_nonneg_int, default=24, help="turntable frames (default: 24)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--force", action="store_true", help="write into a non-empty --out")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="set a TexGenConfig field (JSON)"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_texture)


#: ``raysplat train`` models, each an ``_add_train_<model>(subparsers)`` like :data:`COMMANDS`
TRAIN_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_train_gs,
    _add_train_nerf,
    _add_train_nerdf,
]


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model on a dataset", description="Trains a model on a dataset.")
    models = p.add_subparsers(dest="model", metavar="MODEL")
    models.required = True
    for add in TRAIN_COMMANDS:
        add(models)


# ------------------------------------------------------------------------------------- stitch


def _numbers(text: str, n: int | tuple[int, ...], flag: str) -> list[float]:
    vals = [v for v in text.replace(" ", ",").split(",") if v]
    try:
        out = [float(v) for v in vals]
    except ValueError as e:
        raise ValueError(f"{flag}: expected comma-separated numbers, got {text!r}") from e
    counts = (n,) if isinstance(n, int) else n
    if len(out) not in counts:
        raise ValueError(f"{flag}: expected {' or '.join(map(str, counts))} numbers, got {len(out)}")
    return out


def _stitch(args: argparse.Namespace) -> int:
    from raysplat.stitch import Similarity, StitchConfig, parse_selection, stitch

    set_threads(args)
    if args.transform is not None and (args.translate or args.rotate or args.scale is not None):
        raise ValueError("--transform cannot be combined with --translate / --rotate / --scale")
    if args.transform is not None:
        tf = Similarity.from_matrix(_numbers(args.transform, (12, 16), "--transform"))
    else:
        tf = Similarity.from_parts(
            tuple(_numbers(args.translate, 3, "--translate")) if args.translate else (0.0, 0.0, 0.0),
            tuple(_numbers(args.rotate, 3, "--rotate")) if args.rotate else (0.0, 0.0, 0.0),
            1.0 if args.scale is None else args.scale,
        )
    selection = parse_selection(args.select)
    cfg = StitchConfig.from_dict(
        {**parse_sets(args.set or []), **budget(args), "seed": args.seed, "device": args.device,
         "progress": not args.quiet}
    )  # fmt: skip
    res = stitch(args.target, args.source, selection, tf, cfg, out=args.out, force=args.force)
    m = res.metrics
    print(
        f"stitched {m['n_source']} source Gaussians into {m['n_target']} target Gaussians "
        f"({m['n_boundary']} boundary, {m['steps']} steps, {m['total_seconds']:.1f} s): "
        f"{args.out}/stitched.ply"
    )
    return 0


def _add_stitch(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "stitch",
        help="paste a part of one 3DGS PLY into another without a seam",
        description="3D Gaussian stitching: selects a part of SOURCE, moves it by a rigid transform with "
        "uniform scale, merges it into TARGET and optimises the target's colours so the source's "
        "appearance propagates across the boundary. Writes DIR/stitched.ply (the only PLY), "
        "DIR/labels.npy (0 target, 1 source), metrics.json, before/after renders and a turntable.",
    )
    p.add_argument("target", help="the receiving 3DGS .ply")
    p.add_argument("source", help="the 3DGS .ply to take the part from")
    p.add_argument(
        "--select",
        default=None,
        help="part of SOURCE: box:xmin,ymin,zmin,xmax,ymax,zmax | sphere:cx,cy,cz,r | "
        "obox:cx,cy,cz,hx,hy,hz,qw,qx,qy,qz | all (default: all)",
    )
    p.add_argument(
        "--transform", default=None, help="12 or 16 comma-separated numbers: row-major 3x4 / 4x4 [sR|t]"
    )
    p.add_argument("--translate", default=None, help="tx,ty,tz")
    p.add_argument("--rotate", default=None, help="rx,ry,rz Euler angles in degrees (R = Rz Ry Rx)")
    p.add_argument("--scale", type=_pos_float, default=None, help="uniform scale (default: 1)")
    p.add_argument("--out", default="runs/stitch", help="output directory (default: runs/stitch)")
    p.add_argument("--force", action="store_true", help="write into a non-empty --out")
    p.add_argument("--steps", type=_nonneg_int, default=None, help="optimisation steps (default: 200)")
    p.add_argument("--seconds", type=_pos_float, default=None, help="optimisation time budget in seconds")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    p.add_argument("--threads", type=_pos_int, default=None, help="threads of the Rust kernels and torch")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="any StitchConfig field (repeatable)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_stitch)


def _view(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from raysplat.stitch.viewer import Editor, serve

    set_threads(args)
    if len(args.models) > 2:
        raise ValueError(f"view takes one or two PLY files, got {len(args.models)}")
    for m in args.models:
        if not Path(m).is_file():
            raise FileNotFoundError(f"{m}: no such PLY file")
    editor = Editor(*args.models)
    server = serve(editor, args.host, args.port, *args.size)
    print(f"raysplat view: http://{args.host}:{args.port} (Ctrl-C to stop)", flush=True)
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        server.stop()
    return 0


def _add_view(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "view",
        help="browser viewer and stitching editor for 3DGS PLYs (viser)",
        description="Serves a web viewer (viser, needs raysplat[viewer]) rendering MODEL with raysplat's "
        "rasterizer; with MODEL2 (the source): box selection, a transform gizmo, Stitch and Save.",
    )
    p.add_argument(
        "models", nargs="+", metavar="MODEL", help="the target 3DGS .ply and optionally the source"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=_pos_int, default=8080, help="port (default: 8080)")
    p.add_argument("--size", type=_pos_int, nargs=2, default=(512, 384), metavar=("W", "H"))
    p.add_argument("--threads", type=_pos_int, default=None, help="threads of the Rust kernels and torch")
    p.set_defaults(func=_view)


#: subcommand registrars, in the order ``--help`` lists them
COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_make_scene,
    _add_train,
    _add_render,
    _add_text_to_3d,
    _add_texture,
    _add_stitch,
    _add_view,
]


def build_parser() -> argparse.ArgumentParser:
    """The ``raysplat`` argument parser with every subcommand of :data:`COMMANDS`."""
    from raysplat._core import __version__

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
    except (ValueError, FileExistsError, FileNotFoundError, MissingExtraError) as e:
        print(f"raysplat {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
