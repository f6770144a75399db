"""Benchmark: raysplat.knn (Rust kd-tree) vs scipy.spatial.cKDTree, build + self-query.

Usage: python benches/knn.py [--threads 2] [--k 3] [--sizes 100000 1000000] [--repeat 3]
Prints the best wall time of each over ``--repeat`` runs (after a warm-up call; timing from
``benches/harness.py``) and the speed-up ratio.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import raysplat
import torch
from raysplat.knn import knn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import format_knn_row, time_call, write_json  # noqa: E402


def query_scipy(ckdtree, arr, k: int, workers: int):
    return ckdtree(arr).query(arr, k=k, workers=workers)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", help="also write the results here (scripts/readme_tables.py reads them)")
    args = ap.parse_args()

    raysplat.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    try:
        from scipy.spatial import cKDTree
    except ImportError:
        cKDTree = None

    title = f"k={args.k} threads={args.threads}, best of {args.repeat}, build + query of every point"
    print(title)
    print(f"{'N':>10} {'raysplat [s]':>13} {'cKDTree [s]':>12} {'speed-up':>9}")
    rows = []
    for n in args.sizes:
        pts = torch.rand(n, 3, generator=torch.Generator().manual_seed(0))
        t_rs = time_call(lambda pts=pts: knn(pts, args.k), args.repeat)["best_ms"] / 1e3
        t_sp = None
        if cKDTree is not None:
            arr = pts.double().numpy()
            scipy_call = lambda a=arr: query_scipy(cKDTree, a, args.k, args.threads)  # noqa: E731
            t_sp = time_call(scipy_call, args.repeat)["best_ms"] / 1e3
        row = {"n": n, "raysplat_s": t_rs, "ckdtree_s": t_sp}
        print(format_knn_row(row))
        rows.append(row)
    write_json(args.json, title, rows)


if __name__ == "__main__":
    main()
