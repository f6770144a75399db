"""Benchmark: raysplat.project_to_views (Rust) vs its torch twin (backend("torch")).

Run: ``.venv/bin/python benches/projection.py [--rays 4096] [--threads 2] [--json out.json]``.
ProNeRF-8 sizes: R rays x 8 points x 4 reference views, 20 LLFF-like 504x378 RGB cameras.
Cases: forward, and forward + backward to points and images. Best/median of ``--repeat`` calls
after a warm-up (``benches/harness.py``); the speed-up column is torch time / Rust time.
"""

from __future__ import annotations

import argparse

from harness import header, report, set_threads, time_call, write_json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rays", type=int, default=4096)
    ap.add_argument("--points", type=int, default=8)
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    torch, rs = set_threads(args.threads)
    m, h, w = 20, 378, 504
    g = torch.Generator().manual_seed(0)
    c2w = torch.eye(4)[:3].repeat(m, 1, 1)
    c2w[:, :, 3] = torch.randn(m, 3, generator=g) * 0.1
    K = torch.tensor([[400.0, 0, w / 2], [0, 400.0, h / 2], [0, 0, 1]])
    images = torch.rand(m, h, w, 3, generator=g)
    pts = torch.randn(args.rays, args.points, 3, generator=g) * torch.tensor([0.5, 0.4, 0.5])
    pts[..., 2] -= 3.0
    ids = torch.randint(0, m, (args.rays, args.views), generator=g)
    up = torch.randn(args.rays, args.points, args.views, 3, generator=g)
    p_leaf = pts.clone().requires_grad_(True)
    i_leaf = images.clone().requires_grad_(True)

    def fwd():
        with torch.no_grad():
            return rs.project_to_views(pts, ids, c2w, K, images)

    def fwd_bwd():
        s, _ = rs.project_to_views(p_leaf, ids, c2w, K, i_leaf)
        return torch.autograd.grad((s * up).sum(), (p_leaf, i_leaf))

    title = (
        f"project_to_views: {args.rays} rays x {args.points} points x {args.views} views, "
        f"{m} cameras {w}x{h}, threads={args.threads}, best of {args.repeat}"
    )
    print(title)
    header()
    rows: list = []
    for case, fn in (("forward", fwd), ("forward+backward", fwd_bwd)):
        results = {}
        for impl in ("rust", "torch"):
            with rs.backend("auto" if impl == "rust" else "torch"):
                results[impl] = time_call(fn, args.repeat)
        report(case, results, rows)
    write_json(args.json, title, rows)


if __name__ == "__main__":
    main()
