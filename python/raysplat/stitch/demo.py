"""A synthetic stitching problem with a known answer (tests, the example and the bench).

The target is a textured sphere shell of 3D Gaussians (unit radius, centred at the origin, a
high-frequency checker of two colours plus SH degree 1 view dependence); the source is the same
model with every colour hue-rotated by ``hue_deg``. Stitching the source's cap
``sphere:1,0,0,radius`` scaled by ``1.01`` about the origin (so it sits just over the target)
must remove the colour seam at the cap's rim while keeping the checker elsewhere.
"""

from __future__ import annotations

import math

import torch

from raysplat.gs.model import GaussianModel, rgb_to_sh, sh_to_rgb
from raysplat.stitch.compose import Similarity


def _hue_rotate(rgb: torch.Tensor, deg: float) -> torch.Tensor:
    """Rotates colours about the grey axis by ``deg`` (a hue shift that keeps luminance-ish)."""
    a = math.radians(deg)
    k = torch.ones(3) / math.sqrt(3)
    kx = torch.tensor([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    r = torch.eye(3) + math.sin(a) * kx + (1 - math.cos(a)) * kx @ kx
    return ((rgb - 0.5) @ r.T + 0.5).clamp(0, 1)


#: checker textures of :func:`sphere_model`: (cells per radian, colour A, colour B)
TEXTURES = {
    # two shades of one brown (their difference lies on the grey axis, which a hue rotation
    # keeps): the hue-shifted copy differs from the target only in its low-frequency colour
    "shade": (12.0, (0.80, 0.55, 0.35), (0.55, 0.30, 0.10)),
    # two different hues (orange / blue): a hue rotation changes the texture's colours too
    "two-hue": (4.0, (0.85, 0.55, 0.25), (0.35, 0.45, 0.7)),
}


def sphere_model(n: int = 4000, seed: int = 0, sh_degree: int = 1, texture: str = "shade") -> GaussianModel:
    """``n`` opaque Gaussians on the unit sphere with a checker ``texture`` (:data:`TEXTURES`)."""
    if texture not in TEXTURES:
        raise ValueError(f"texture must be one of {sorted(TEXTURES)}, got {texture!r}")
    freq, col_a, col_b = TEXTURES[texture]
    g = torch.Generator().manual_seed(seed)
    i = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1 - 2 * i / n
    phi = i * math.pi * (3 - math.sqrt(5))
    r = (1 - z * z).sqrt()
    pts = torch.stack([r * torch.cos(phi), r * torch.sin(phi), z], 1).float()
    lon, lat = torch.atan2(pts[:, 1], pts[:, 0]), torch.asin(pts[:, 2].clamp(-1, 1))
    check = ((torch.floor(lon * freq) + torch.floor(lat * freq)) % 2)[:, None]
    rgb = check * torch.tensor(col_a) + (1 - check) * torch.tensor(col_b)
    noise = 0.03 * torch.randn(n, 3, generator=g)
    if texture == "shade":  # brightness noise only: the texture stays on the grey axis
        noise = noise[:, :1].expand(n, 3)
    rgb = (rgb + noise).clamp(0, 1)
    m = GaussianModel.from_points(pts, rgb, sh_degree=sh_degree, init_opacity=0.98, init_scale=0.9)
    if sh_degree > 0:
        m.params["shN"].data[:, :3] = 0.1 * torch.randn(n, 3, 3, generator=g)
    return m


def hue_shifted(m: GaussianModel, hue_deg: float = 120.0) -> GaussianModel:
    """A copy of ``m`` with band-0 colours hue-rotated by ``hue_deg``."""
    p = {k: v.detach().clone() for k, v in m.params.items()}
    p["sh0"] = rgb_to_sh(_hue_rotate(sh_to_rgb(p["sh0"][:, 0]), hue_deg))[:, None]
    return GaussianModel(p["means"], p["quats"], p["scales"], p["opacities"], p["sh0"], p["shN"])


def demo_problem(
    n: int = 4000, seed: int = 0, hue_deg: float = 120.0, radius: float = 0.6, texture: str = "shade"
):
    """``(target, source, selection, transform)`` of the known-answer composite (module doc)."""
    target = sphere_model(n, seed, texture=texture)
    source = hue_shifted(target, hue_deg)
    return target, source, f"sphere:1,0,0,{radius}", Similarity.from_parts(scale=1.01)


__all__ = ["demo_problem", "hue_shifted", "sphere_model"]
