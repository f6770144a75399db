"""Quality measures of a generated texture: seam energy and cross-view consistency."""

from __future__ import annotations

import math

import torch

from raysplat.bake import bake
from raysplat.mesh import sample_texture
from raysplat.metrics import psnr

__all__ = ["consistency_psnr", "per_view_textures", "seam_energy"]


def per_view_textures(views: torch.Tensor, buffers, size: int, exponent: float = 0.0):
    """Each view baked alone: ``(textures [N, T, T, 3], texel_weight [N, T, T])``."""
    out, tws = [], []
    w = buffers.weights(exponent)
    for i in range(views.shape[0]):
        tex, tw = bake(views[i].permute(1, 2, 0), buffers.uv[i], w[i], size)
        out.append(tex)
        tws.append(tw)
    return torch.stack(out), torch.stack(tws)


def consistency_psnr(views: torch.Tensor, buffers, size: int) -> float | None:
    """Cross-view consistency: PSNR between the views' colours of the same surface points, i.e.
    between each pair of per-view textures on the texels both views cover (pooled over pairs)."""
    tex, tw = per_view_textures(views, buffers, size)
    diffs = []
    n = tex.shape[0]
    for i in range(n):
        for j in range(i + 1, n):
            both = (tw[i] > 0) & (tw[j] > 0)
            if bool(both.any()):
                diffs.append((tex[i][both] - tex[j][both]).reshape(-1))
    if not diffs:
        return None
    d = torch.cat(diffs)
    return psnr(d, torch.zeros_like(d))


def seam_energy(
    texture: torch.Tensor, mesh, views: torch.Tensor | None = None, buffers=None, samples: int = 8
) -> dict:
    """Colour jumps (mean squared RGB difference) across seams:

    * ``chart``: along every mesh edge cut by the UV atlas, the texture sampled at ``samples``
      points on each side (the same 3-D points) — what a viewer sees as a seam line;
    * ``view``: between 4-neighbour texels (both covered) whose dominant view (largest bake
      weight, ``views`` / ``buffers`` given) differs — the view-coverage boundaries.
    ``total`` is the mean over both sets of samples."""
    out: dict = {"chart": None, "view": None, "total": None}
    sq = []
    a, b = mesh.seam_edges()
    if a.shape[0]:
        s = torch.linspace(0.05, 0.95, samples)[None, :, None]
        pa = a[:, :1] + s * (a[:, 1:] - a[:, :1])
        pb = b[:, :1] + s * (b[:, 1:] - b[:, :1])
        d = ((sample_texture(texture, pa) - sample_texture(texture, pb)) ** 2).sum(-1).reshape(-1)
        out["chart"] = float(d.mean())
        sq.append(d)
    if views is not None and buffers is not None:
        _, tw = per_view_textures(views, buffers, texture.shape[0], exponent=6.0)
        covered = tw.sum(0) > 0
        dom = tw.argmax(0)
        ds = []
        for dy, dx in ((0, 1), (1, 0)):
            h, w = covered.shape
            c1, c2 = covered[: h - dy, : w - dx], covered[dy:, dx:]
            d1, d2 = dom[: h - dy, : w - dx], dom[dy:, dx:]
            edge = c1 & c2 & (d1 != d2)
            t1, t2 = texture[: h - dy, : w - dx], texture[dy:, dx:]
            ds.append(((t1 - t2) ** 2).sum(-1)[edge])
        d = torch.cat(ds)
        if d.numel():
            out["view"] = float(d.mean())
            sq.append(d)
    if sq:
        allv = torch.cat(sq)
        out["total"] = float(allv.mean()) if allv.numel() else None
    if out["total"] is not None and not math.isfinite(out["total"]):
        out["total"] = None
    return out
