"""gsplat 1.5 calls on raysplat: camera pose refinement with ``packed=True``, and the ortho /
fisheye camera models.

A cloud of random Gaussians is rendered from a reference camera; the camera is then perturbed
(a shift and a small rotation) and recovered by gradient descent on ``viewmats`` through
``raysplat.rasterization(..., packed=True)`` — the call gsplat's ``simple_trainer`` makes with
``--pose_opt`` — while ``meta["means2d"].grad`` (packed, one row per visible pair) is what a
densification strategy would read. Renders of the same Gaussians through a pinhole, an
orthographic and a fisheye camera are written next to ``metrics.json``. Also prints which
backend CUDA tensors would use here (nerfacc / gsplat when their CUDA extensions load).

Run: ``python examples/gsplat_compat.py --out runs/compat`` (``--device cuda`` on a GPU).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import raysplat as rs
import torch
from raysplat.metrics import psnr
from raysplat.training.outputs import save_image


def gaussians(n: int, device: str) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "means": (torch.rand(n, 3, generator=g) * 2 - 1).to(device),
        "quats": torch.randn(n, 4, generator=g).to(device),
        "scales": (torch.rand(n, 3, generator=g) * 0.08 + 0.03).to(device),
        "opacities": (torch.rand(n, generator=g) * 0.5 + 0.4).to(device),
        "colors": torch.rand(n, 3, generator=g).to(device),
    }


def rotation_y(angle: float) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/gsplat_compat")
    ap.add_argument("--gaussians", type=int, default=2000)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dev, w = args.device, args.size
    print("CUDA dispatch here:", ", ".join(f"{k}: {v}" for k, v in rs.peer_status().items()))

    g = gaussians(args.gaussians, dev)
    K = torch.tensor([[[0.9 * w, 0, w / 2], [0, 0.9 * w, w / 2], [0, 0, 1]]], device=dev)
    true = torch.eye(4)[None].clone()
    true[0, 2, 3] = 3.5
    true = true.to(dev)
    with torch.no_grad():
        target, _, _ = rs.rasterization(**g, viewmats=true, Ks=K, width=w, height=w, packed=True)

    # perturbed start: the pose is refined as a delta (rotation about y, translation)
    start = true.clone()
    start[0, :3, :3] = rotation_y(0.06).to(dev) @ true[0, :3, :3]
    start[0, :3, 3] += torch.tensor([0.15, -0.1, 0.2], device=dev)
    delta = torch.zeros(1, 4, 4, device=dev, requires_grad=True)
    opt = torch.optim.Adam([delta], lr=5e-3)
    err0 = float((start - true)[0, :3].norm())
    t0 = time.perf_counter()
    for step in range(args.steps):
        viewmats = torch.cat([(start + delta)[:, :3], true[:, 3:]], 1)  # keep the [0, 0, 0, 1] row
        img, _, meta = rs.rasterization(**g, viewmats=viewmats, Ks=K, width=w, height=w, packed=True)
        meta["means2d"].retain_grad()
        loss = (img - target).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():  # project the rotation block back onto SO(3)
            u, _, vh = torch.linalg.svd(start[0, :3, :3] + delta[0, :3, :3])
            delta[0, :3, :3] = u @ vh - start[0, :3, :3]
        if step == 0:
            nnz = meta["camera_ids"].numel()
            print(f"packed meta: {nnz} visible pairs, means2d grad {tuple(meta['means2d'].grad.shape)}")
    secs = time.perf_counter() - t0
    with torch.no_grad():
        final = start + delta
        final[:, 3] = true[:, 3]
        err1 = float((final - true)[0, :3].norm())
        img, _, _ = rs.rasterization(**g, viewmats=final, Ks=K, width=w, height=w)
        img0, _, _ = rs.rasterization(**g, viewmats=start, Ks=K, width=w, height=w)
        p0, p1 = float(psnr(img0[0].clamp(0, 1), target[0])), float(psnr(img[0].clamp(0, 1), target[0]))
        views = {}
        Ko = K.clone()
        Ko[:, 0, 0] = Ko[:, 1, 1] = w / 2.6
        for model, k in (
            ("pinhole", K),
            ("ortho", Ko),
            ("fisheye", K * torch.tensor([0.6, 0.6, 1.0], device=dev)[:, None]),
        ):
            k = k.clone()
            k[:, 2, 2] = 1.0
            views[model], _, _ = rs.rasterization(
                **g, viewmats=true, Ks=k, width=w, height=w, camera_model=model
            )
            save_image(out / f"{model}.png", views[model][0].clamp(0, 1).cpu())
    metrics = {
        "pose_error_start": err0,
        "pose_error_final": err1,
        "psnr_start": p0,
        "psnr_final": p1,
        "steps": args.steps,
        "seconds": secs,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    print(
        f"pose error {err0:.4f} -> {err1:.4f}, PSNR {p0:.2f} -> {p1:.2f} dB in {args.steps} steps "
        f"({secs:.1f} s); wrote {out}/metrics.json and pinhole/ortho/fisheye.png"
    )


if __name__ == "__main__":
    main()
