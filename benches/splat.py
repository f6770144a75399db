"""Gaussian-splatting rasterizer: Rust kernels vs the pure-torch twin, forward and backward.

Run: ``.venv/bin/python benches/splat.py``. Every case runs in its own subprocess on 2 threads;
"peak" is the growth of that process's peak RSS over the warm-up and timed runs (inputs
excluded). Scene (as in the peer survey): 100,000 Gaussians uniform in [-1, 1]^3, camera 3 units
away, fx = fy = 256, 256x256, log-uniform scales 0.004-0.02, opacities U(0.05, 0.95), SH degree 3.
A full frame is projection + SH + tile binning + compositing; the torch twin composites in
chunks of tiles (``[tiles, list, 256]`` tensors, about 4M elements each).
"""

from __future__ import annotations

import argparse
import math

from harness import header, in_subprocess, report, set_threads, time_call, write_json

N, SIZE = 100_000, 256


def scene(torch, n: int = N, size: int = SIZE) -> dict:
    g = torch.Generator().manual_seed(0)
    means = torch.rand(n, 3, generator=g) * 2 - 1
    quats = torch.randn(n, 4, generator=g)
    scales = torch.exp(math.log(0.004) + torch.rand(n, 3, generator=g) * (math.log(0.02) - math.log(0.004)))
    opacities = 0.05 + 0.9 * torch.rand(n, generator=g)
    sh = torch.randn(n, 16, 3, generator=g) * 0.3
    viewmats = torch.eye(4)[None].clone()
    viewmats[0, 2, 3] = 3.0
    Ks = torch.tensor([[[256.0, 0, size / 2], [0, 256.0, size / 2], [0, 0, 1]]])
    return {
        "means": means,
        "quats": quats,
        "scales": scales,
        "opacities": opacities,
        "colors": sh,
        "viewmats": viewmats,
        "Ks": Ks,
        "width": size,
        "height": size,
        "sh_degree": 3,
    }


def _call(name: str, inp: dict, rs, torch):
    from raysplat.splat import rasterization

    if name == "rasterization_fwd":

        def run():
            with torch.no_grad():
                return rasterization(**inp)

        return run
    if name == "rasterization_fwd_bwd":
        keys = ("means", "quats", "scales", "opacities", "colors")

        def run():
            params = {k: inp[k].clone().requires_grad_(True) for k in keys}
            img, alpha, meta = rasterization(**{**inp, **params})
            meta["means2d"].retain_grad()
            (img.sum() + alpha.sum()).backward()

        return run
    if name == "rasterization_fwd_bwd_packed_pose":  # gsplat's pose-refinement call
        keys = ("means", "quats", "scales", "opacities", "colors", "viewmats")

        def run():
            params = {k: inp[k].clone().requires_grad_(True) for k in keys}
            img, alpha, meta = rasterization(**{**inp, **params}, packed=True)
            meta["means2d"].retain_grad()
            (img.sum() + alpha.sum()).backward()

        return run
    if name == "rasterization_fwd_fisheye":

        def run():
            with torch.no_grad():
                return rasterization(**inp, camera_model="fisheye")

        return run
    raise KeyError(name)


def _runner(name: str, impl: str, inp, torch, rs):
    call = _call(name, inp, rs, torch)

    def run():
        with rs.backend(impl):
            return call()

    return run


def _child(name: str, impl: str, threads: int, repeats: int, queue) -> None:
    torch, rs = set_threads(threads)
    try:
        inp = scene(torch)
        fn = _runner(name, impl, inp, torch, rs)
    except ImportError as err:
        queue.put({"skipped": f"{impl}: {err}"})
        return
    queue.put(time_call(fn, repeats))


def measure(name: str, impl: str, threads: int, repeats: int) -> dict:
    return in_subprocess(_child, name, impl, threads, repeats)


CASES = ["rasterization_fwd", "rasterization_fwd_bwd"]
#: gsplat 1.5 compatibility cases (``--cases``; not in the default run nor the README table)
COMPAT_CASES = ["rasterization_fwd_bwd_packed_pose", "rasterization_fwd_fisheye"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--torch-repeats", type=int, default=3)
    ap.add_argument("--json", help="also write the results here (scripts/readme_tables.py reads them)")
    ap.add_argument("--cases", nargs="+", choices=CASES + COMPAT_CASES, default=CASES)
    ap.add_argument("--impls", nargs="+", choices=("rust", "torch"), default=("rust", "torch"))
    args = ap.parse_args()
    rows = []
    title = f"{N} Gaussians, {SIZE}x{SIZE}, SH degree 3, {args.threads} threads"
    print(title + "\n")
    header(24)
    for case in args.cases:
        results = {
            impl: measure(case, impl, args.threads, args.repeats if impl == "rust" else args.torch_repeats)
            for impl in args.impls
        }
        report(case, results, rows, 24)
    write_json(args.json, title, rows)


if __name__ == "__main__":
    main()
