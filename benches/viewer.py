"""Benchmark: ``raysplat view``'s frame path (frames per second at 512 x 384 on the CPU).

Times exactly what the viewer does for each client camera update (``raysplat.stitch.viewer``):
``Editor.render`` (the composite of the target and the selected, transformed source part, then
``raysplat.rasterization`` with the client's camera) and viser's JPEG encoding of the frame
(``set_background_image(..., format="jpeg")``), over an orbit of cameras around the model with
viser's default vertical field of view. Models: the demo sphere (``raysplat.stitch.demo``) with
``--n`` Gaussians, alone and with its hue-shifted copy as the source (the cap
``sphere:1,0,0,0.6`` selected, scaled by 1.01), i.e. N + about 9 % Gaussians.

Usage: python benches/viewer.py [--n 100000] [--size 512 384] [--threads 2] [--frames 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import time

import raysplat
import torch
from raysplat.cameras import c2w_to_viewmat, look_at
from raysplat.stitch.demo import demo_problem
from raysplat.stitch.viewer import Editor


def orbit_viewmats(frames: int, radius: float = 3.0) -> list[torch.Tensor]:
    out = []
    for i in range(frames):
        a = 2 * math.pi * i / frames
        eye = (radius * math.cos(a), radius * math.sin(a), 0.8)
        out.append(c2w_to_viewmat(look_at(eye, (0.0, 0.0, 0.0))).float())
    return out


def measure(editor: Editor, frames: int, width: int, height: int, fov: float) -> dict:
    from viser._scene_api import _encode_image_binary  # the viewer's encoder

    cams = orbit_viewmats(frames)
    editor.render(cams[0], fov, width, height)  # warm-up (buffers, thread pool)
    t_comp = t_render = t_enc = 0.0
    t0, c0 = time.perf_counter(), time.process_time()
    for vm in cams:
        a = time.perf_counter()
        editor.composite()
        b = time.perf_counter()
        img = editor.render(vm, fov, width, height)
        c = time.perf_counter()
        _encode_image_binary(img, "jpeg", jpeg_quality=None)
        d = time.perf_counter()
        t_comp, t_render, t_enc = t_comp + b - a, t_render + c - b, t_enc + d - c
    total = time.perf_counter() - t0 - t_comp  # Editor.render includes its own composite() call
    cpu = time.process_time() - c0
    n = len(editor.composite()[0])
    return {
        "gaussians": n,
        "fps": frames / total,
        "ms_per_frame": 1e3 * total / frames,
        "ms_composite": 1e3 * t_comp / frames,
        "ms_render_incl_composite": 1e3 * t_render / frames,
        "ms_jpeg": 1e3 * t_enc / frames,
        "cpu_ms_per_frame": 1e3 * cpu / frames,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--size", type=int, nargs=2, default=(512, 384))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--fov-deg", type=float, default=75.0, help="vertical FOV (viser's default camera)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    raysplat.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    target, source, sel, _ = demo_problem(args.n)
    w, h = args.size
    fov = math.radians(args.fov_deg)
    rows = []
    print(f"raysplat view frame path, {w}x{h}, threads={args.threads}, {args.frames} orbit frames")
    print(f"{'model':>16} {'Gaussians':>9} {'fps':>6} {'ms/frame':>8} {'composite':>9} {'render':>7} "
          f"{'jpeg':>6} {'CPU ms/frame':>12}")  # fmt: skip
    for name, ed in (("target", Editor(target)), ("target+source", Editor(target, source))):
        if ed.source is not None:
            ed.set_selection(sel)
            ed.set_transform((1.0, 0.0, 0.0, 0.0), (0.0, 0.0, 0.0), 1.01)
        r = measure(ed, args.frames, w, h, fov)
        print(f"{name:>16} {r['gaussians']:>9} {r['fps']:>6.1f} {r['ms_per_frame']:>8.1f} "
              f"{r['ms_composite']:>9.1f} {r['ms_render_incl_composite'] - r['ms_composite']:>7.1f} "
              f"{r['ms_jpeg']:>6.1f} {r['cpu_ms_per_frame']:>12.1f}")  # fmt: skip
        rows.append({"model": name, **r})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
