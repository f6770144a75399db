"""Benchmark: TexGen vs its two baselines on an analytic camera-aware prior with several answers,
plus seconds per texture with the tiny Stable Diffusion and bake / dilate kernel times.

The prior is :class:`raysplat.guidance.TextureMixturePrior`: K = 3 known textures of one
UV-mapped mesh (an xatlas-unwrapped icosphere, 642 vertices), the second and third being the
first with its hue rotated by 120° and 240° (RGB channels cycled). The first is a smooth colour
field of the 3-D surface point written into the atlas, so all three are seamless. Its exact
denoiser for a view is the posterior-weighted mix of the three textures' renders from that
camera, so every view on its own is a valid sample of any of the three — independent per-view
sampling picks different textures in different views.

Per method (``texgen``, ``sequential``, ``independent``) and seed, on the covered texels:
* ``tex_psnr``: PSNR of the result against the nearest known texture (higher: one mode);
* ``seam``: mean squared RGB jump across UV-chart seams and view-coverage boundaries;
* ``consistency``: PSNR between overlapping views' colours of the same texels;
reported as the mean over seeds. Then seconds per texture with the tiny prior at the defaults
(6 views, 20 steps, 64 x 64 views, 256² texture), and bake / fill_holes (Rust vs torch twin) and
render_texture times.

Usage: python benches/texgen.py [--seeds 5] [--threads 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import trimesh
from raysplat import backend, bake, fill_holes, render_texture, set_num_threads
from raysplat.guidance import TextureMixturePrior
from raysplat.metrics import psnr
from raysplat.texgen import TexGenConfig, chart_mask, generate_texture, load_mesh
from raysplat.texgen.atlas import texel_positions
from raysplat.texgen.quality import consistency_psnr, seam_energy

#: name -> (method, TexGenConfig overrides); the "texgen (...)" rows are ablations: of the UV-space
#: noise initialisation, of the resampling's re-estimate against all the views of the step, and of
#: the view sharing (the prior's counterpart of shared self-attention) altogether
METHODS = {
    "texgen": ("texgen", {}),
    "texgen (view noise)": ("texgen", {"noise": "view"}),
    "texgen (no re-estimate)": ("texgen", {"reestimate": False}),
    "texgen (no view sharing)": ("texgen", {"kv_share": 0.0}),
    "sequential": ("sequential", {}),
    "independent": ("independent", {}),
}


def base_texture(mesh, size: int) -> torch.Tensor:
    """A seamless texture: a smooth colour field of the 3-D surface point, written into the atlas
    (texels outside the charts filled by dilation)."""
    pos, inside = texel_positions(mesh, size)
    x, y, z = pos.unbind(-1)
    rgb = torch.stack(
        [
            0.5 + 0.4 * torch.sin(3.0 * x + 1.0),
            0.5 + 0.4 * torch.cos(3.0 * y),
            0.5 + 0.4 * torch.sin(2.5 * z + 2 * x),
        ],
        -1,
    )
    tex, _ = fill_holes(rgb, inside.float())
    return tex.clamp(0, 1)


def quality(mesh, textures, name: str, seed: int, cfg: TexGenConfig) -> dict:
    prior = TextureMixturePrior(mesh, textures)
    method, over = METHODS[name]
    r = generate_texture(prior, mesh, "texture", cfg, method=method, seed=seed, **over)
    modes = []
    for i in range(cfg.views):
        rend = prior.renders(r.c2w[i], r.K[i], cfg.image_size, cfg.image_size)
        vis = r.buffers.visible[i]
        ps_i = [psnr(r.views[i].permute(1, 2, 0)[vis], x.permute(1, 2, 0)[vis]) for x in rend]
        modes.append(max(range(len(ps_i)), key=lambda k: ps_i[k]))
    cov = (r.texel_weight > 0) & chart_mask(mesh, cfg.texture_size)
    ps = [psnr(r.texture[cov], t[cov]) for t in textures]
    seams = seam_energy(r.texture, mesh, r.views, r.buffers)
    return {
        "method": name,
        "seed": seed,
        "view_modes": modes,
        "mode_agreement": max(modes.count(k) for k in set(modes)) / len(modes),
        "tex_psnr": max(ps),
        "mode": int(max(range(len(ps)), key=lambda k: ps[k])),
        "seam": seams["total"],
        "seam_chart": seams["chart"],
        "seam_view": seams["view"],
        "consistency": consistency_psnr(r.views, r.buffers, cfg.texture_size),
        "seconds": r.seconds,
    }


def tiny_seconds() -> dict:
    from raysplat.texgen.run import load_prior

    prior = load_prior("tiny")
    ico = trimesh.creation.icosphere(3)
    cfg = TexGenConfig()
    mesh = load_mesh((ico.vertices, ico.faces), texture_size=cfg.texture_size)
    generate_texture(prior, mesh, "a vase", cfg, steps=1)  # warm-up
    t0 = time.perf_counter()
    r = generate_texture(prior, mesh, "a vase", cfg)
    return {
        "seconds_per_texture": time.perf_counter() - t0,
        "views": cfg.views,
        "steps": cfg.steps,
        "image_size": cfg.image_size,
        "texture_size": cfg.texture_size,
        "kv_layers": r.info["kv_shared_layers"],
    }


def _best_ms(fn, repeats: int = 5) -> float:
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return 1e3 * min(ts)


def kernel_times() -> list[dict]:
    g = torch.Generator().manual_seed(0)
    n, s, t = 6, 256, 512
    colors = torch.rand(n, s, s, 3, generator=g)
    uv = torch.rand(n, s, s, 2, generator=g)
    w = torch.rand(n, s, s, generator=g)
    w[w < 0.4] = 0
    tex, tw = bake(colors, uv, w, t)
    rows = []
    for impl in ("rust", "torch"):
        with backend("auto" if impl == "rust" else "torch"):
            rows.append(
                {
                    "kernel": f"bake {n}x{s}² -> {t}²",
                    "impl": impl,
                    "best_ms": _best_ms(lambda: bake(colors, uv, w, t)),
                }
            )
            sparse = tw * (torch.rand(t, t, generator=g) > 0.7)
            rows.append(
                {
                    "kernel": f"fill_holes {t}² (30% seeds)",
                    "impl": impl,
                    "best_ms": _best_ms(lambda sparse=sparse: fill_holes(tex, sparse)),
                }
            )
    rows.append(
        {
            "kernel": f"render_texture {n}x{s}² from {t}²",
            "impl": "torch (sample_texture)",
            "best_ms": _best_ms(lambda: render_texture(tex, uv)),
        }
    )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip-tiny", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    set_num_threads(args.threads)
    ico = trimesh.creation.icosphere(3)
    mesh = load_mesh((ico.vertices, ico.faces), texture_size=64)
    base = base_texture(mesh, 64)
    textures = torch.stack([base, base[..., [1, 2, 0]], base[..., [2, 0, 1]]])
    cfg = TexGenConfig(views=6, steps=20, image_size=32, texture_size=64)
    rows = []
    for seed in range(args.seeds):
        for m in METHODS:
            r = quality(mesh, textures, m, seed, cfg)
            rows.append(r)
            print(
                f"  seed {seed} {m:24s} modes {r['view_modes']} tex PSNR {r['tex_psnr']:6.2f} dB  "
                f"seam {r['seam']:.4f}  "
                f"consistency {r['consistency']:6.2f} dB  ({r['seconds']:.1f} s)",
                flush=True,
            )
    print(
        "\n| method | texture PSNR vs nearest known (dB) | views on the majority texture | seam energy "
        "(chart / view) | cross-view consistency PSNR (dB) | s per texture |"
    )
    print("|---|---|---|---|---|---|")
    summary = {}
    for m in METHODS:
        rs = [r for r in rows if r["method"] == m]
        keys = ("tex_psnr", "mode_agreement", "seam", "seam_chart", "seam_view", "consistency", "seconds")
        mean = {k: statistics.mean(r[k] for r in rs) for k in keys}
        summary[m] = mean
        print(
            f"| {m} | {mean['tex_psnr']:.2f} | {100 * mean['mode_agreement']:.0f} % | {mean['seam']:.4f} "
            f"({mean['seam_chart']:.4f} / "
            f"{mean['seam_view']:.4f}) | {mean['consistency']:.2f} | {mean['seconds']:.2f} |"
        )
    tiny = None if args.skip_tiny else tiny_seconds()
    if tiny:
        print(
            f"\ntiny prior, defaults ({tiny['views']} views x {tiny['steps']} steps, {tiny['image_size']}² "
            f"views, {tiny['texture_size']}² texture, KV sharing on {tiny['kv_layers']} layers, depth "
            f"ControlNet): {tiny['seconds_per_texture']:.1f} s per texture"
        )
    kt = kernel_times()
    print("\n| kernel | impl | best ms |")
    print("|---|---|---|")
    for k in kt:
        print(f"| {k['kernel']} | {k['impl']} | {k['best_ms']:.1f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"rows": rows, "summary": summary, "tiny": tiny, "kernels": kt, "threads": args.threads},
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()
