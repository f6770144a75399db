"""Benchmark: SDS vs VSD in 2D (ProlificDreamer's 2D experiment) on an analytic prior.

The prior is a :class:`raysplat.guidance.GaussianMixturePrior` whose prompt ``"shapes"`` names
four well-separated modes (red disc, green square, blue diamond, orange ring on white; std 0.05)
and whose unconditional prompt mixes them with a second name (``"colors"``: four flat colours),
so classifier-free guidance has something to push away from. Its ε* is exact, so what differs
is the distillation alone. ``distill_images`` optimises ``--particles`` images directly:
SDS with CFG 100 (and 7.5 for reference), VSD with CFG 7.5 with the generic learned ε_φ
(:class:`raysplat.distill.ResidualScore`, trained online as in ProlificDreamer), and VSD with
an oracle ε_φ: the exact score of the current particle cloud (a Gaussian mixture of std 0.05
around the particles), which isolates the VSD update from how well ε_φ is learned.

Reported per method, in one run: RMSE of each particle to its nearest mode (mean), how many of
the four modes hold a particle within RMSE ``--tol`` (coverage), the distinct nearest modes,
diversity (mean pairwise RMSE between particles), the fraction of saturated pixel values
(0 or 1 after clamping), and wall time.

Usage: python benches/distill_2d.py [--steps 400] [--particles 8] [--size 16] [--json out.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import torch
from raysplat.distill import distill_images
from raysplat.guidance import GaussianMixturePrior, procedural_targets
from raysplat.guidance.analytic import _mixture_eps


class ParticleScore(torch.nn.Module):
    """Oracle ε_φ: the exact ε of a Gaussian mixture (std ``std``) around the particles ``z``."""

    def __init__(self, prior, z0: torch.Tensor, std: float = 0.05):
        super().__init__()
        self.prior, self.z, self.std = prior, z0.clone(), std
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, z_t, t, cond, c2w=None):
        logw = torch.zeros(z_t.shape[0], self.z.shape[0])
        return _mixture_eps(z_t, t, self.prior.alphas_cumprod, self.z, logw, self.std) + 0 * self.dummy

    def track(self, step, z):
        self.z = z.detach().clone()


def stats(x: torch.Tensor, modes: torch.Tensor, tol: float) -> dict:
    d = ((x[:, None] - modes[None]) ** 2).flatten(2).mean(-1).sqrt()  # [P, K] RMSE
    nearest = d.min(1)
    pairs = [float((x[i] - x[j]).pow(2).mean().sqrt()) for i, j in itertools.combinations(range(len(x)), 2)]
    return {
        "nearest_rmse": float(nearest.values.mean()),
        "coverage": int((d < tol).any(0).sum()),
        "distinct_nearest": len(set(nearest.indices.tolist())),
        "diversity": sum(pairs) / max(1, len(pairs)),
        "saturated": float(((x <= 1e-3) | (x >= 1 - 1e-3)).float().mean()),
        "assignment": nearest.indices.tolist(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--particles", type=int, default=8)
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--tol", type=float, default=0.15, help="RMSE under which a particle is 'at' a mode")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    base = procedural_targets(args.size)
    prior = GaussianMixturePrior({"shapes": base["shapes"], "colors": base["colors"]}, std=0.05)
    modes = prior.modes("shapes")
    x0 = torch.rand(
        args.particles, 3, args.size, args.size, generator=torch.Generator().manual_seed(args.seed)
    )
    oracle = ParticleScore(prior, 2 * x0 - 1)
    runs = [
        ("sds", 100.0, {}),
        ("sds", 7.5, {}),
        ("vsd", 7.5, {"lora_lr": 1e-3}),
        ("vsd-oracle", 7.5, {"phi": oracle, "callback": oracle.track}),
    ]
    rows = []
    print(
        f"{args.particles} particles, {args.size}x{args.size}, {args.steps} steps, 4 modes, tol {args.tol}\n"
    )
    print(
        f"{'method':10s} {'cfg':>5s} {'nearest':>8s} {'cover':>6s} {'distinct':>9s} "
        f"{'divers':>7s} {'satur':>6s} {'sec':>6s}"
    )
    for method, cfg, kw in runs:
        t0 = time.perf_counter()
        x = distill_images(
            prior,
            "shapes",
            method.split("-")[0],
            n_particles=args.particles,
            steps=args.steps,
            size=args.size,
            guidance_scale=cfg,
            seed=args.seed,
            init=x0,
            **kw,
        )
        sec = time.perf_counter() - t0
        s = stats(x, modes, args.tol)
        rows.append({"method": method, "guidance_scale": cfg, "seconds": sec, **s})
        print(
            f"{method:10s} {cfg:5.1f} {s['nearest_rmse']:8.3f} {s['coverage']:4d}/4 "
            f"{s['distinct_nearest']:7d}/4 "
            f"{s['diversity']:7.3f} {s['saturated']:6.2f} {sec:6.1f}   nearest modes {s['assignment']}"
        )
    pair = [float((modes[i] - modes[j]).pow(2).mean().sqrt()) for i, j in itertools.combinations(range(4), 2)]
    print(f"\n(reference: the modes' own mean pairwise RMSE {sum(pair) / len(pair):.3f})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
