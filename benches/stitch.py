"""Benchmark: 3D Gaussian stitching on a known-answer composite, and the boundary query.

Composite (``raysplat.stitch.demo``): a textured sphere of Gaussians (the target) and a copy of it
with every colour hue-rotated by 120° (the source); the source's cap ``sphere:1,0,0,0.6`` scaled
by 1.01 is pasted over the target. ``--texture shade`` (default): a checker of two shades of one
brown (contrast and noise on the grey axis, which the hue rotation keeps), so the source differs
from the target only in its low-frequency colour and the seamless answer is known: the target's
texture plus a smoothly decaying colour offset. ``--texture two-hue``: an orange / blue checker,
whose texture colours themselves change under the rotation. Measured in 4 renders around the cap
(256 x 192), side by side for naive pasting (the merge, no optimisation) and the stitch:

* seam: mean RGB Sobel magnitude in the boundary band (pixels within ``--band`` px of the
  source/target label edge, found by rendering the labels, where everything within ``--band`` px
  is opaque: the cap's silhouette against the background is not a seam);
* seam (low-pass): the same after a 13 x 13 box filter (the checker's edges averaged out, the
  colour step across the seam kept);
* interior gradient error: mean |Sobel(result) - Sobel(target alone)| over the target's pixels
  farther than ``--band`` px from that edge, relative to the target's mean Sobel magnitude there
  (0: all detail kept; a seamless result must change the low frequencies somewhere in the
  target, so this is not 0 even for the exact answer: 0.27-0.30 at 8 k with the offset decaying
  over 0.1-0.25 L);
* detail error: the same on the high-pass images (minus the 13 x 13 box low-pass, the
  complement of the low-pass seam): the texture lost or changed, not the low-frequency shift;
* wall and CPU (process) time per stitch on the CPU (load-free: models in memory; includes boundary, palette,
  optimisation; no output files).

Boundary query: ``find_boundary`` (raysplat.knn's Rust kd-tree, K = 8, source = N / 4 centres)
vs ``scipy.spatial.cKDTree`` (build + query, ``workers = threads``) at each ``--sizes`` N.

Usage: python benches/stitch.py [--threads 2] [--n 20000 100000] [--steps 200] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import raysplat
import torch
import torch.nn.functional as F
from harness import time_call
from raysplat.cameras import c2w_to_viewmat, intrinsics
from raysplat.splat import rasterization
from raysplat.stitch import StitchConfig, find_boundary, sobel, stitch
from raysplat.stitch.demo import TEXTURES, demo_problem
from raysplat.stitch.optimize import _parts, _render, output_cameras


def _mag(img: torch.Tensor, smooth: int = 0) -> torch.Tensor:
    if smooth:  # box low-pass first: the seam in the colour average, not the texture's edges
        x = F.avg_pool2d(img.permute(0, 3, 1, 2), 2 * smooth + 1, 1, smooth, count_include_pad=False)
        img = x.permute(0, 2, 3, 1)
    g = sobel(img)  # [B, 2C, H-2, W-2]
    c = img.shape[-1]
    gx, gy = g[:, 0::2], g[:, 1::2]
    return (gx.square() + gy.square()).sqrt().sum(1) / c  # [B, H-2, W-2]


def _highpass(img: torch.Tensor, smooth: int = 6) -> torch.Tensor:
    """``img`` minus its box low-pass (the complement of the low-pass seam's filter)."""
    x = img.permute(0, 3, 1, 2)
    low = F.avg_pool2d(x, 2 * smooth + 1, 1, smooth, count_include_pad=False)
    return (x - low).permute(0, 2, 3, 1)


def composite_metrics(res, target, band: int) -> dict:
    n_t = len(target)
    allm = res.model.means.detach()
    centre = (allm.min(0).values + allm.max(0).values) / 2
    focus = res.model.means.detach()[:n_t][res.boundary].mean(0)
    cams = output_cameras(centre, focus, res.metrics["L"], 8)[[0, 1, 7, 4]]
    w, h = 256, 192
    K = intrinsics(w, h, 45.0)[None]
    bg = torch.ones(1, 3)
    with torch.no_grad():
        lab = res.labels.float()[:, None]
        p = _parts(res.model)
        lab_img, alpha, _ = rasterization(*p[:4], lab, c2w_to_viewmat(cams), K.expand(4, 3, 3), w, h)
        edge = _mag(lab_img) > 0.02
        edge = F.max_pool2d(edge.float()[:, None], 2 * band + 1, 1, band)[:, 0] > 0
        # only where both sides are opaque: the cap's silhouette against the background is not
        # a source/target seam, and its contrast would swamp the measure
        solid = -F.max_pool2d(-alpha[:, None, 1:-1, 1:-1, 0], 2 * band + 1, 1, band)[:, 0] > 0.99
        edge = edge & solid
        interior = (~edge) & (lab_img[:, 1:-1, 1:-1, 0] < 0.01) & (alpha[:, 1:-1, 1:-1, 0] > 0.99)
        t_img = _render(_parts(target), cams, K, w, h, bg)[0]
        ref, g_ref = _mag(t_img), sobel(t_img)
        hp_ref = sobel(_highpass(t_img))
        hp_mag = hp_ref.abs().sum(1) / 3
        out = {}
        for name, m in (("naive", res.naive), ("stitched", res.model)):
            img = _render(_parts(m), cams, K, w, h, bg)[0]
            mag = _mag(img)
            err = (sobel(img) - g_ref).abs().sum(1) / 3
            hp_err = (sobel(_highpass(img)) - hp_ref).abs().sum(1) / 3
            out[name] = {
                "seam": float(mag[edge].mean()),
                "seam_lowpass": float(_mag(img, 6)[edge].mean()),
                "interior_grad_error": float(err[interior].mean() / ref[interior].mean()),
                "interior_detail_error": float(hp_err[interior].mean() / hp_mag[interior].mean()),
            }
        out["band_pixels"] = int(edge.sum())
        out["interior_pixels"] = int(interior.sum())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n", type=int, nargs="*", default=[20_000, 100_000], help="target sizes (none: skip)")
    ap.add_argument("--steps", type=int, default=None, help="stitch steps (default: StitchConfig's)")
    ap.add_argument("--band", type=int, default=3, help="boundary band half-width in pixels")
    ap.add_argument("--sizes", type=int, nargs="*", default=[100_000, 1_000_000], help="boundary query sizes")
    ap.add_argument("--texture", default="shade", choices=sorted(TEXTURES), help="the demo's checker")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a StitchConfig field")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    raysplat.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    rows: dict = {"composite": [], "boundary_query": []}

    print(f"known-answer composite (hue-shifted cap, texture {args.texture!r}), threads={args.threads}")
    print(f"{'N':>8} {'steps':>5} {'seam naive':>10} {'seam stitch':>11} {'ratio':>6} {'low-pass ratio':>14} "
          f"{'int.err naive':>13} {'int.err stitch':>14} {'detail err':>10} "
          f"{'wall [s]':>8} {'CPU [s]':>8}")  # fmt: skip
    for n in args.n:
        target, source, sel, tf = demo_problem(n, texture=args.texture)
        cfg = StitchConfig(progress=False, **({"steps": args.steps} if args.steps is not None else {}))
        for kv in args.set:
            key, val = kv.split("=", 1)
            setattr(cfg, key, type(getattr(cfg, key))(val))
        cfg.validate()
        t0, c0 = time.perf_counter(), time.process_time()
        res = stitch(target, source, sel, tf, cfg)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        m = composite_metrics(res, target, args.band)
        a, b = m["naive"], m["stitched"]
        print(f"{n:>8} {res.metrics['steps']:>5} {a['seam']:>10.4f} {b['seam']:>11.4f} "
              f"{b['seam'] / a['seam']:>6.2f} {b['seam_lowpass'] / a['seam_lowpass']:>14.2f} "
              f"{a['interior_grad_error']:>13.3f} {b['interior_grad_error']:>14.3f} "
              f"{b['interior_detail_error']:>10.3f} {wall:>8.1f} {cpu:>8.1f}")  # fmt: skip
        rows["composite"].append({"n": n, "steps": res.metrics["steps"], "wall_s": wall, "cpu_s": cpu, **m,
                                  "n_boundary": res.metrics["n_boundary"]})  # fmt: skip

    try:
        from scipy.spatial import cKDTree
    except ImportError:
        cKDTree = None
    if not args.sizes:
        return _dump(args.json, rows)
    print(f"\nboundary query (K=8, source = N/4), best of {args.repeat}")
    print(f"{'N':>10} {'raysplat [s]':>13} {'cKDTree [s]':>12} {'speed-up':>9}")
    for n in args.sizes:
        g = torch.Generator().manual_seed(0)
        tgt, src = torch.rand(n, 3, generator=g), torch.rand(n // 4, 3, generator=g) * 0.5 + 0.5
        op = torch.ones(n)
        t_rs = time_call(lambda t=tgt, s=src, o=op: find_boundary(t, o, s, 0.05, 8, 0.5), args.repeat)
        t_rs = t_rs["best_ms"] / 1e3
        t_sp = float("nan")
        if cKDTree is not None:
            a, b = tgt.double().numpy(), src.double().numpy()

            def sp(a=a, b=b):
                d, _ = cKDTree(b).query(a, k=8, workers=args.threads)
                return d.mean(1) < 0.05

            t_sp = time_call(sp, args.repeat)["best_ms"] / 1e3
        print(f"{n:>10} {t_rs:>13.3f} {t_sp:>12.3f} {t_sp / t_rs:>8.1f}x")
        rows["boundary_query"].append({"n": n, "raysplat_s": t_rs, "ckdtree_s": t_sp})
    _dump(args.json, rows)


def _dump(path, rows) -> None:
    if path:
        with open(path, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
