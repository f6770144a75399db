"""End-to-end demo of raysplat's sampling and volume-rendering ops on CPU.

A small voxel radiance field (density + colour on a 32^3 grid) is fitted to renders of an
analytic coloured sphere: rays from pinhole cameras -> stratified + importance samples ->
volume rendering -> photometric loss -> backward through the Rust kernels -> Adam. The
occupancy grid then renders a held-out view with empty-space skipping.

Run: ``make demo`` (or ``.venv/bin/python examples/demo.py --out out/demo``).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import raysplat as rs
import torch
import torch.nn.functional as F
from raysplat.cameras import look_at
from raysplat.metrics import psnr
from tqdm import tqdm

AABB = torch.tensor([-1.0, -1.0, -1.0, 1.0, 1.0, 1.0])


def true_field(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Density and colour of the target: a solid sphere of radius 0.6 with a colour gradient."""
    sigma = 40.0 * torch.sigmoid((0.6 - x.norm(dim=-1)) * 60.0)
    rgb = (0.5 + 0.5 * torch.stack([x[..., 0], x[..., 1], -x[..., 2]], -1) / 0.6).clamp(0, 1)
    return sigma, rgb


class VoxelField(torch.nn.Module):
    """Density and colour on a dense grid, trilinearly interpolated."""

    def __init__(self, res: int = 32):
        super().__init__()
        self.grid = torch.nn.Parameter(torch.zeros(1, 4, res, res, res))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        coords = x.reshape(1, -1, 1, 1, 3)  # grid_sample wants (x, y, z) -> (W, H, D)
        feat = F.grid_sample(self.grid, coords, align_corners=True).reshape(4, -1).T
        sigma = F.softplus(feat[:, 0] * 10.0 - 2.0) * 4.0
        return sigma.reshape(x.shape[:-1]), torch.sigmoid(feat[:, 1:]).reshape(*x.shape[:-1], 3)


def render(field, origins, directions, n_coarse=32, n_fine=32, stratified=True, generator=None):
    """Two-level (coarse -> importance) volume rendering of rays; returns rgb, weights info."""
    t_near, t_far, hit = rs.ray_aabb_intersect(origins, directions, AABB)
    edges = rs.stratified_samples(t_near, t_far, n_coarse, stratified=stratified, generator=generator)
    with torch.no_grad():
        mid = 0.5 * (edges[:, 1:] + edges[:, :-1])
        sigma_c, _ = field(origins[:, None] + mid[..., None] * directions[:, None])
        w_c, _, _ = rs.render_weight_from_density(edges[:, :-1], edges[:, 1:], sigma_c)
    fine = rs.importance_sampling(edges, w_c, n_fine, stratified=stratified, generator=generator)
    mid = 0.5 * (fine[:, 1:] + fine[:, :-1])
    sigma, rgb = field(origins[:, None] + mid[..., None] * directions[:, None])
    color, opacity, depth, _ = rs.volume_render(
        fine[:, :-1], fine[:, 1:], sigma, rgb, render_bkgd=torch.ones(3)
    )
    return color, opacity


def target_colors(origins, directions):
    """Ground-truth pixels, rendered densely with the analytic field."""
    t_near, t_far, _ = rs.ray_aabb_intersect(origins, directions, AABB)
    edges = rs.stratified_samples(t_near, t_far, 256, stratified=False)
    mid = 0.5 * (edges[:, 1:] + edges[:, :-1])
    sigma, rgb = true_field(origins[:, None] + mid[..., None] * directions[:, None])
    color, _, _, _ = rs.volume_render(edges[:, :-1], edges[:, 1:], sigma, rgb, render_bkgd=torch.ones(3))
    return color


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--size", type=int, default=48, help="image width and height")
    ap.add_argument("--views", type=int, default=16)
    ap.add_argument("--out", default="out/demo")
    args = ap.parse_args()
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    size = args.size
    focal = 1.2 * size
    K = torch.tensor([[focal, 0, size / 2], [0, focal, size / 2], [0, 0, 1.0]])
    angles = torch.linspace(0, 2 * math.pi, args.views + 2)[:-1]
    eyes = torch.stack([3 * angles.cos(), 3 * angles.sin(), 0.8 + 0.3 * torch.sin(3 * angles)], -1)
    c2w = look_at(eyes, torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]))
    train_c2w, test_c2w = c2w[:-1], c2w[-1:]
    origins, directions = rs.generate_rays(train_c2w, K, size, size)
    origins, directions = origins.reshape(-1, 3), directions.reshape(-1, 3)
    print(
        f"raysplat {rs.__version__} on {rs.get_num_threads()} threads: {train_c2w.shape[0]} training views "
        f"of {size}x{size}, {origins.shape[0]} rays"
    )
    t0 = time.perf_counter()
    with torch.no_grad():
        chunks = zip(origins.split(8192), directions.split(8192), strict=True)
        target = torch.cat([target_colors(o, d) for o, d in chunks])
    print(f"rendered ground truth in {time.perf_counter() - t0:.1f}s")

    field = VoxelField()
    opt = torch.optim.Adam(field.parameters(), lr=0.05)
    t0 = time.perf_counter()
    bar = tqdm(range(args.steps), desc="fit", unit="step")
    for step in bar:
        idx = torch.randint(0, origins.shape[0], (2048,), generator=gen)
        color, _ = render(field, origins[idx], directions[idx], generator=gen)
        loss = F.mse_loss(color, target[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}", psnr=f"{-10 * math.log10(loss.item()):.1f}")
    train_s = time.perf_counter() - t0

    # Held-out view: occupancy grid from the fitted density, then marched rendering.
    grid = rs.OccupancyGrid(AABB, resolution=64)
    step_size = 2 * math.sqrt(3) / 256
    with torch.no_grad():
        grid.update(0, lambda x: field(x)[0] * step_size, threshold=0.01)
        o, d = rs.generate_rays(test_c2w[0], K, size, size)
        o, d = o.reshape(-1, 3), d.reshape(-1, 3)
        gt = target_colors(o, d)
        ri, ts, te = grid.sampling(o, d, render_step_size=step_size, density_fn=lambda x: field(x)[0])
        mid = 0.5 * (ts + te)
        sigma, rgb = field(o[ri] + mid[:, None] * d[ri])
        pred, opacity, _, _ = rs.volume_render(ts, te, sigma, rgb, ri, o.shape[0], render_bkgd=torch.ones(3))
        baseline = psnr(gt.mean(0, keepdim=True).expand_as(gt), gt)
    metrics = {
        "train_seconds": round(train_s, 2),
        "steps": args.steps,
        "psnr": round(psnr(pred, gt), 2),
        "mean_color_psnr": round(baseline, 2),
        "occupied_cells": int(grid.binaries.sum()),
        "marched_samples_per_ray": round(ri.numel() / o.shape[0], 2),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    try:
        from PIL import Image

        side = (
            torch.cat([pred, gt], 0).reshape(2, size, size, 3).permute(1, 0, 2, 3).reshape(size, 2 * size, 3)
        )
        Image.fromarray((side.clamp(0, 1) * 255).byte().numpy()).save(out / "test_view.png")
        print(f"wrote {out / 'test_view.png'} (left: raysplat render, right: ground truth)")
    except ImportError:
        pass
    print(json.dumps(metrics, indent=2))
    print(f"metrics in {out / 'metrics.json'}")


if __name__ == "__main__":
    main()
