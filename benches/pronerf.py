"""ProNeRF vs the other NeRF samplers on the sample scenes (CPU), equal training time per method.

For the sample LLFF scene and the sample Blender scene, trains each method for ``--seconds`` of
training time (``--clock cpu``, the default: process CPU seconds / threads, which estimates
idle-machine wall time on a machine shared with other jobs; ``--clock wall`` for wall time), each
in its own spawned process on ``--threads`` threads, then reports test PSNR, field evaluations a
ray and render time a frame at the scene's resolution: the median wall time over the test views
(``ms/frame``) and the process CPU time a frame over the threads (``cpu ms/frame``, steadier on a
loaded machine). ProNeRF rows add where their render time goes (field, PAS networks,
projections).

Methods: ProNeRF-8 and -12 (and -12 with the last quarter of the budget in the refinement
stage, ``pronerf-12-refine``); the hierarchical sampler with the same field evaluations a ray
(4+4, 6+6), at raysplat's default (32+48) and at NeRF's 64+128; the occupancy grid; proposal.

ProNeRF runs with the library defaults: on the Blender scene that includes the per-ray box
ranges and the interlevel loss (``pronerf_box``, ``pronerf_interlevel``; ablate them with e.g.
``--set pronerf_box=false pronerf_interlevel=0``).

Run: ``python benches/pronerf.py --seconds 120 --threads 1 --json benches/results/pronerf.json``
(about 2 scenes x 8 methods x (seconds + evaluation)).
"""

from __future__ import annotations

import argparse
import json
import time

from harness import in_subprocess, set_threads, write_json

METHODS = {
    "pronerf-8": {"sampler": "pronerf", "pronerf_samples": 8},
    "pronerf-12": {"sampler": "pronerf", "pronerf_samples": 12},
    "pronerf-12-refine": {"sampler": "pronerf", "pronerf_samples": 12, "pronerf_refine": 0.25},
    "hierarchical-4+4": {"sampler": "hierarchical", "n_coarse": 4, "n_fine": 4},
    "hierarchical-6+6": {"sampler": "hierarchical", "n_coarse": 6, "n_fine": 6},
    "hierarchical-32+48": {"sampler": "hierarchical"},
    "hierarchical-64+128": {"sampler": "hierarchical", "n_coarse": 64, "n_fine": 128},
    "occgrid": {"sampler": "occgrid"},
    "proposal": {"sampler": "proposal"},
}


def dense_psnr(trainer) -> float:
    """The test PSNR of a ProNeRF model's field rendered densely by marching the sampler's own
    occupancy grid (the occgrid sampler's rendering, no PAS samples): how good the field is,
    apart from where ProNeRF puts its samples."""
    from raysplat.nerf.samplers import OccGridSampler

    pro = trainer.sampler
    dense = OccGridSampler(pro.aabb)
    dense.grid.load_state_dict(pro.grid.state_dict())
    trainer.sampler = dense
    try:
        return trainer.evaluate()["psnr"]
    finally:
        trainer.sampler = pro


def run_one(
    scene_name: str,
    method: str,
    seconds: float,
    clock: str,
    threads: int,
    views: int,
    sets: dict,
    dense: bool,
    queue,
) -> None:
    torch, rs = set_threads(threads)
    from raysplat.nerf import NerfConfig, Trainer, load_scene

    scene = load_scene(rs.datasets.sample_scene(scene_name))
    kw = {**METHODS[method], **(sets if METHODS[method]["sampler"] == "pronerf" else {})}
    cfg = NerfConfig(steps=None, seconds=seconds, clock=clock, seed=0, eval_views=views, **kw)
    trainer = Trainer(scene, cfg)
    trainer.train(progress=False)
    c0 = time.process_time()
    ev = trainer.evaluate()
    frames = len(trainer.test_views()) + 1  # evaluate renders one warm-up frame
    cpu_ms = 1000 * (time.process_time() - c0) / frames / threads
    extra = {"dense_psnr": dense_psnr(trainer)} if dense and getattr(trainer.sampler, "grid", None) else {}
    queue.put(
        {
            "scene": scene_name,
            "method": method,
            "steps": trainer.step,
            "train_s": round(trainer.elapsed(), 1),
            "psnr": ev["psnr"],
            "ssim": ev["ssim"],
            "field_evals_per_ray": ev["eval_samples_per_ray"],
            "ms_per_frame": ev["render_ms_per_frame"],
            "cpu_ms_per_frame": cpu_ms,
            "breakdown": ev.get("render_breakdown"),
            "size": f"{scene.width}x{scene.height}",
            **extra,
        }
    )


def time_render(scene_name: str, method: str, repeats: int, queue) -> None:
    """Render cost on ONE thread, in process CPU time (steady on a loaded machine, no spin-waiting
    thread pools): ms a frame of the first test view, median of ``repeats`` after a warm-up. The
    models are untrained: the cost of these samplers does not depend on the weights (the
    occupancy grid's does, so it is left out)."""
    torch, rs = set_threads(1)
    from raysplat.nerf import NerfConfig, Trainer, load_scene

    scene = load_scene(rs.datasets.sample_scene(scene_name))
    trainer = Trainer(scene, NerfConfig(steps=1, seed=0, **METHODS[method]))
    v = trainer.test_views()[0]
    h, w = v.image.shape[:2]
    trainer.render(v.c2w[None], v.K, w, h)
    times = []
    for _ in range(repeats):
        if hasattr(trainer.sampler, "reset_timing"):
            trainer.sampler.reset_timing()
        c0 = time.process_time()
        trainer.render(v.c2w[None], v.K, w, h)
        times.append(1000 * (time.process_time() - c0))
    bd = trainer.render_breakdown() if hasattr(trainer.sampler, "reset_timing") else None
    queue.put(
        {
            "scene": scene_name,
            "method": method,
            "cpu_ms_1thread": sorted(times)[len(times) // 2],
            "breakdown": bd,
        }
    )


def render_timing(args) -> None:
    rows = []
    for scene in args.scenes:
        for method in args.methods:
            if method == "occgrid":
                continue
            r = in_subprocess(time_render, scene, method, 3, timeout=3600)
            rows.append(r)
            print(json.dumps(r), flush=True)
    for scene in args.scenes:
        by = {r["method"]: r["cpu_ms_1thread"] for r in rows if r["scene"] == scene}
        for p in ("pronerf-8", "pronerf-12"):
            if p in by:
                ratios = {m: round(v / by[p], 2) for m, v in by.items() if m.startswith("hier")}
                print(f"{scene}: {p} render speed-up (1-thread CPU time):", json.dumps(ratios))
    write_json(args.json, "render cost, 1 thread, process CPU ms a frame", rows)


def verdicts(rows: list[dict]) -> list[dict]:
    """The issue's claims per scene: ProNeRF-12 beats hierarchical 6+6, is within 1 dB of (or
    beats) hierarchical 32+48 while rendering >= 3x faster, and renders >= 6x faster than 64+128
    (speeds on CPU time a frame)."""
    out = []
    for scene in sorted({r["scene"] for r in rows}):
        by = {r["method"]: r for r in rows if r["scene"] == scene}
        p = by.get("pronerf-12")
        if p is None:
            continue
        checks = []
        if "hierarchical-6+6" in by:
            checks.append(
                ("PSNR(pronerf-12) > PSNR(hierarchical-6+6)", p["psnr"] - by["hierarchical-6+6"]["psnr"], 0.0)
            )
        if "hierarchical-32+48" in by:
            h = by["hierarchical-32+48"]
            checks.append(
                ("PSNR(pronerf-12) >= PSNR(hierarchical-32+48) - 1 dB", p["psnr"] - h["psnr"], -1.0)
            )
            checks.append(
                ("speed-up vs hierarchical-32+48 >= 3x", h["cpu_ms_per_frame"] / p["cpu_ms_per_frame"], 3.0)
            )
        if "hierarchical-64+128" in by:
            h = by["hierarchical-64+128"]
            checks.append(
                ("speed-up vs hierarchical-64+128 >= 6x", h["cpu_ms_per_frame"] / p["cpu_ms_per_frame"], 6.0)
            )
        for name, value, target in checks:
            out.append({"scene": scene, "claim": name, "value": value, "holds": value >= target})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="training seconds per method (default 60)")
    ap.add_argument("--scenes", nargs="+", default=["llff", "blender"], choices=["llff", "blender"])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eval-views", type=int, default=4, help="test views scored and timed (default 4)")
    ap.add_argument("--json", help="also write the rows here")
    ap.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="NerfConfig overrides for the pronerf methods (ablations, e.g. pronerf_lr=0.001)",
    )
    ap.add_argument(
        "--render-timing",
        action="store_true",
        help="only time rendering on one thread (untrained models, process CPU time; no training)",
    )
    ap.add_argument(
        "--dense",
        action="store_true",
        help="ProNeRF rows with an occupancy grid also score their field rendered densely (dense_psnr)",
    )
    args = ap.parse_args()
    from raysplat.cli import parse_sets

    sets = parse_sets(args.set)
    if args.render_timing:
        render_timing(args)
        return
    print(f"{args.seconds:.0f} s ({args.clock} clock) per method, {args.threads} threads", flush=True)
    head = (
        f"{'scene':<9}{'method':<22}{'steps':>7}{'PSNR':>8}{'SSIM':>7}{'evals/ray':>11}{'ms/frame':>10}"
        f"{'cpu ms/frame':>14}"
    )
    rows = []
    for scene in args.scenes:
        for method in args.methods:
            r = in_subprocess(
                run_one,
                scene,
                method,
                args.seconds,
                args.clock,
                args.threads,
                args.eval_views,
                sets,
                args.dense,
                timeout=7200,
            )
            rows.append(r)
            print(json.dumps(r), flush=True)
    print()
    print(head)
    for r in rows:
        print(
            f"{r['scene']:<9}{r['method']:<22}{r['steps']:>7}{r['psnr']:>8.2f}{r['ssim']:>7.3f}"
            f"{r['field_evals_per_ray']:>11.1f}{r['ms_per_frame']:>10.0f}{r['cpu_ms_per_frame']:>14.0f}"
            + (f"  (field rendered densely: {r['dense_psnr']:.2f} dB)" if "dense_psnr" in r else "")
        )
    checks = verdicts(rows)
    print()
    for c in checks:
        print(f"{c['scene']}: {c['claim']}: {c['value']:.2f} -> {'holds' if c['holds'] else 'MISSED'}")
    write_json(args.json, head, rows, claims=checks, seconds=args.seconds, clock=args.clock, sets=sets)


if __name__ == "__main__":
    main()
