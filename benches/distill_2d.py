"""Benchmark: SDS vs VSD in 2D (ProlificDreamer's 2D experiment) on an analytic prior.

The prior is a :class:`raysplat.guidance.GaussianMixturePrior` whose prompt ``"shapes"`` names
four well-separated modes (red disc, green square, blue diamond, orange ring on white; std 0.05)
and whose unconditional prompt mixes them with a second name (``"colors"``: four flat colours),
so classifier-free guidance has something to push away from. Its ε* is exact, so what differs
is the distillation alone. ``distill_images`` optimises ``--particles`` images directly:
SDS with CFG 100 (and 7.5 for reference), and VSD with CFG 7.5 with three ε_φ, all trained
online on the particles as in ProlificDreamer except the oracle:

* ``vsd``: ``distill_images``' default for such priors, a learned Gaussian mixture
  (:class:`raysplat.distill.MixtureScore`, one component per particle, means started at
  N(0, 0.1²), trained at the particles' learning rate);
* ``vsd-k4``: the same with 4 ε_φ steps per particle step (the paper takes 1), so ε_φ tracks
  the particles more closely;
* ``vsd-conv``: the camera-conditioned convolutional :class:`raysplat.distill.ResidualScore`
  (text-to-3D's generic ε_φ, lr 1e-3);
* ``vsd-oracle``: the exact score of the current particle cloud (a Gaussian mixture of std 0.05
  around the particles), which isolates the VSD update from how well ε_φ is learned.

For the learned ε_φ the bench also measures how well it fits the score it should learn: a quarter
into the run, on fresh noisy particles, ``‖ε_φ − ε_q‖ / ‖ε_pre(y) − ε_q‖`` per t with ε_q the
exact score of the particles (Diracs): 1 means ε_φ learned nothing beyond its starting point
ε_pre(y) (the conv net) or an equally wrong guess, 0 a perfect fit; and ("cos") the cosine between
the VSD update it gives, ε̂_cfg − ε_φ, and the one the exact score would give, ε̂_cfg − ε_q.

Reported per method, in one run: RMSE of each particle to its nearest mode (mean), how many of
the four modes hold a particle within RMSE ``--tol`` (coverage), the distinct nearest modes,
diversity (mean pairwise RMSE between particles), the fraction of saturated pixel values
(0 or 1 after clamping), and wall time.

Usage: python benches/distill_2d.py [--steps 400] [--particles 8] [--size 16] [--seeds 0,1,2,3]
                                  [--json out.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import torch
from raysplat.distill import distill_images, guidance_eps, make_variational_score
from raysplat.guidance import GaussianMixturePrior, procedural_targets
from raysplat.guidance.analytic import _mixture_eps
from raysplat.guidance.base import add_noise

FIT_T = (50, 200, 500, 800)


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


class FitProbe:
    """Callback measuring ε_φ against the exact particle score at step ``at``."""

    def __init__(self, prior, phi, at: int, seed: int = 123):
        self.prior, self.phi, self.at, self.rel, self.cos = prior, phi, at, None, None
        self.gen = torch.Generator().manual_seed(seed)

    @torch.no_grad()
    def __call__(self, step, z):
        if step != self.at:
            return
        n = z.shape[0]
        cond = self.prior.embed_prompts(["shapes"]).expand(n, -1)
        uncond = self.prior.embed_prompts([""]).expand(n, -1)
        ac, self.rel, self.cos = self.prior.alphas_cumprod, [], []
        for tt in FIT_T:
            t = torch.full((n,), tt)
            z_t = add_noise(ac, z, torch.randn(z.shape, generator=self.gen), t)
            eq = _mixture_eps(z_t, t, ac, z, torch.zeros(n, n), 0.0)
            e0 = self.prior.predict_noise(z_t, t, cond)
            ephi = self.phi(z_t, t, cond)
            self.rel.append(float((ephi - eq).norm() / (e0 - eq).norm()))
            # agreement of the VSD update direction with the one an exact ε_φ would give
            ecfg = guidance_eps(self.prior, z_t, t, cond, uncond, 7.5)
            cos = torch.nn.functional.cosine_similarity((ecfg - ephi).flatten(1), (ecfg - eq).flatten(1), 1)
            self.cos.append(float(cos.mean()))


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
    ap.add_argument("--seeds", default="0", help="comma-separated seeds (initial particles and noise)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    base = procedural_targets(args.size)
    prior = GaussianMixturePrior({"shapes": base["shapes"], "colors": base["colors"]}, std=0.05)
    modes = prior.modes("shapes")
    seeds = [int(v) for v in args.seeds.split(",")]
    P, S = args.particles, args.size
    print(f"{P} particles, {S}x{S}, {args.steps} steps, 4 modes, tol {args.tol}, seeds {seeds}\n")
    print(
        f"{'seed':>4s} {'method':10s} {'cfg':>5s} {'nearest':>8s} {'cover':>6s} {'distinct':>9s} "
        f"{'divers':>7s} {'satur':>6s} {'sec':>6s}  eps_phi fit at t={','.join(map(str, FIT_T))}"
    )
    rows = []
    for seed in seeds:
        x0 = torch.rand(P, 3, S, S, generator=torch.Generator().manual_seed(seed))
        for method, cfg in [
            ("sds", 100.0),
            ("sds", 7.5),
            ("vsd", 7.5),
            ("vsd-k4", 7.5),
            ("vsd-conv", 7.5),
            ("vsd-oracle", 7.5),
        ]:
            kw, probe = {}, None
            if method in ("vsd", "vsd-k4"):
                phi = make_variational_score(
                    prior,
                    kind="mixture",
                    shape=(3, S, S),
                    components=P,
                    generator=torch.Generator().manual_seed(seed),
                )
                probe = FitProbe(prior, phi, args.steps // 4)
                kw = {"phi": phi, "callback": probe, "lora_steps": 4 if method == "vsd-k4" else 1}
            elif method == "vsd-conv":
                phi = make_variational_score(prior, channels=3, kind="residual")
                probe = FitProbe(prior, phi, args.steps // 4)
                kw = {"phi": phi, "callback": probe, "lora_lr": 1e-3}
            elif method == "vsd-oracle":
                oracle = ParticleScore(prior, 2 * x0 - 1)
                kw = {"phi": oracle, "callback": oracle.track}
            t0 = time.perf_counter()
            x = distill_images(
                prior,
                "shapes",
                method.split("-")[0],
                n_particles=P,
                steps=args.steps,
                size=S,
                guidance_scale=cfg,
                seed=seed,
                init=x0,
                **kw,
            )
            sec = time.perf_counter() - t0
            s = stats(x, modes, args.tol)
            fit = probe.rel if probe is not None else None
            cos = probe.cos if probe is not None else None
            rows.append(
                {
                    "seed": seed,
                    "method": method,
                    "guidance_scale": cfg,
                    "seconds": sec,
                    "fit": fit,
                    "update_cos": cos,
                    **s,
                }
            )
            print(
                f"{seed:4d} {method:10s} {cfg:5.1f} {s['nearest_rmse']:8.3f} {s['coverage']:4d}/4 "
                f"{s['distinct_nearest']:7d}/4 {s['diversity']:7.3f} {s['saturated']:6.2f} {sec:6.1f}  "
                + (
                    " ".join(f"{r:.2f}" for r in fit) + " | cos " + " ".join(f"{c:.2f}" for c in cos)
                    if fit
                    else "-"
                )
                + f"   nearest modes {s['assignment']}",
                flush=True,
            )
    if len(seeds) > 1:
        print("\nmean over seeds: method  nearest  coverage  distinct  diversity")
        for method, cfg in dict.fromkeys((r["method"], r["guidance_scale"]) for r in rows):
            rs = [r for r in rows if r["method"] == method and r["guidance_scale"] == cfg]
            m = {
                k: sum(r[k] for r in rs) / len(rs)
                for k in ("nearest_rmse", "coverage", "distinct_nearest", "diversity")
            }
            print(
                f"  {method:10s} {cfg:5.1f} {m['nearest_rmse']:7.3f} {m['coverage']:7.2f}/4 "
                f"{m['distinct_nearest']:7.2f}/4 {m['diversity']:8.3f}"
            )
    pair = [float((modes[i] - modes[j]).pow(2).mean().sqrt()) for i, j in itertools.combinations(range(4), 2)]
    print(f"\n(reference: the modes' own mean pairwise RMSE {sum(pair) / len(pair):.3f})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
