"""Benchmark: text-to-3D by score distillation on a camera-aware analytic prior (CPU).

The prior is :class:`raysplat.guidance.RenderedMeshPrior` on the sample scene's four textured
objects (``raysplat.datasets.generate.procedural_objects``), turned y-up and normalised into a
sphere of radius 0.5: for every random training camera its "sample" is the mesh's render from
that camera on white, so distillation must recover the mesh. Quality is the PSNR of the
trainer's renders from 8 held-out cameras (azimuths 22.5° + k·45°, elevation 15°, 64 x 64)
against the mesh's renders, after a budget of process CPU time (``--cpu-seconds``, divided by
the torch thread count: what the run would take on an idle machine with that many cores).

Runs (``--runs``, default all): ``sds-nerf`` (the headline: SDS + NeRF, white background,
albedo shading, default settings), ``sds-gs``, ``vsd-nerf``, ``sds-nerf-proposal`` (the proposal
sampler instead of the occupancy grid), ``sds-gs-densify`` (3DGS with text3d's densification
defaults); then seconds per step of NeRF and GS at the default 64 x 64 render size.

Usage: python benches/text3d.py [--cpu-seconds 420] [--short-cpu-seconds 120]
       [--runs sds-nerf sds-gs vsd-nerf sds-nerf-proposal sds-gs-densify]
       [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from raysplat import set_num_threads
from raysplat.guidance import RenderedMeshPrior
from raysplat.metrics import psnr
from raysplat.text3d import Text3DConfig, Trainer
from raysplat.text3d.score import RenderedScore

RUNS = {
    "sds-nerf": {"method": "sds", "representation": "nerf"},
    "sds-gs": {"method": "sds", "representation": "gs"},
    "vsd-nerf": {"method": "vsd", "representation": "nerf"},
    "vsd-gs": {"method": "vsd", "representation": "gs"},
    "vsd-nerf-2p": {"method": "vsd", "representation": "nerf", "n_particles": 2},
    "vsd-nerf-residual": {"method": "vsd", "representation": "nerf", "score": "residual"},
    "sds-nerf-proposal": {"method": "sds", "representation": "nerf", "sampler": "proposal"},
    "sds-gs-densify": {"method": "sds", "representation": "gs", "densify": {}},
}


def run(prior, name: str, cpu_seconds: float, eval_every: int, threads: int) -> dict:
    cfg = Text3DConfig(steps=None, seconds=1e9, background="white", shading="albedo", **RUNS[name])
    tr = Trainer(prior, "mesh", cfg)
    curve = []
    t0 = time.perf_counter()
    while tr.cpu_seconds / threads < cpu_seconds:
        tr.train(steps=tr.step + eval_every, seconds=1e9, progress=False)
        p = tr.evaluate()["psnr"]
        curve.append((tr.step, round(tr.cpu_seconds / threads, 1), round(p, 2)))
        print(
            f"  {name}: step {tr.step:5d}  cpu {tr.cpu_seconds / threads:7.1f} s  held-out PSNR {p:6.2f} dB",
            flush=True,
        )
    fit = score_fit(tr) if isinstance(tr.phi, RenderedScore) else None
    if fit is not None:
        print(f"  {name}: ε_φ's model vs particle 0 on the held-out views: {fit:.2f} dB", flush=True)
    return {
        "run": name,
        "score_fit_psnr": fit,
        "steps": tr.step,
        "cpu_seconds": tr.cpu_seconds / threads,
        "wall_seconds": time.perf_counter() - t0,
        "psnr": curve[-1][2],
        "best_psnr": max(c[2] for c in curve),
        "curve": curve,
        "n_gaussians": len(tr.particles[0].model) if cfg.representation == "gs" else None,
    }


@torch.no_grad()
def score_fit(tr: Trainer) -> float:
    """PSNR of VSD's rendered ε_φ against particle 0 on the held-out views (the best of its
    components): how closely ε_φ tracks the particle it models."""
    best = []
    for k in range(len(tr.phi.components)):
        errs = []
        for v in tr.test_views():
            c2w, K, size = v.c2w[None].to(tr.device), v.K[None].to(tr.device), v.image.shape[0]
            x, _ = tr.render_particle(0, c2w, K, size, train=False)
            tr._score_view = (size, "albedo", None, tr._last_bg)
            errs.append(psnr(tr._render_score_component(k, c2w, K), x.permute(0, 3, 1, 2)))
        best.append(sum(errs) / len(errs))
    tr._score_view = None  # back to the default view outside a step
    return float(max(best))


def seconds_per_step(prior, representation: str, steps: int = 20) -> float:
    tr = Trainer(prior, "mesh", Text3DConfig(steps=5, representation=representation, background="white"))
    tr.train(progress=False)  # warm-up
    c0 = tr.cpu_seconds
    tr.train(steps=5 + steps, progress=False)
    return (tr.cpu_seconds - c0) / steps / torch.get_num_threads()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu-seconds", type=float, default=420.0, help="budget of the sds-nerf run")
    ap.add_argument("--short-cpu-seconds", type=float, default=120.0, help="budget of the other runs")
    ap.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    set_num_threads(args.threads)
    prior = RenderedMeshPrior("sample")
    rows = []
    for name in args.runs:
        budget = args.cpu_seconds if name == "sds-nerf" else args.short_cpu_seconds
        print(f"{name}: {budget:.0f} CPU seconds / {args.threads} threads", flush=True)
        rows.append(run(prior, name, budget, args.eval_every, args.threads))
    print("\nrun                steps   cpu s   PSNR dB (best)")
    for r in rows:
        print(
            f"{r['run']:17s} {r['steps']:6d} {r['cpu_seconds']:7.1f}   "
            f"{r['psnr']:6.2f} ({r['best_psnr']:.2f})"
        )
    sps = {rep: seconds_per_step(prior, rep) for rep in ("nerf", "gs")}
    print(f"\nseconds per step (64 x 64, CPU time / threads): nerf {sps['nerf']:.3f}, gs {sps['gs']:.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"runs": rows, "seconds_per_step": sps}, f, indent=2)


if __name__ == "__main__":
    main()
