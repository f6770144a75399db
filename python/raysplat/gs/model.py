"""The Gaussian model: raw (pre-activation) parameters and their initialisation."""

from __future__ import annotations

import math

import torch

from raysplat.knn import knn_scale_init
from raysplat.splat import rasterization

#: SH band-0 constant: colour = C0 * f_dc + 0.5
SH_C0 = 0.28209479177387814
#: raw parameter names, in PLY / checkpoint order (gsplat's ``splats`` keys)
PARAM_NAMES = ("means", "quats", "scales", "opacities", "sh0", "shN")


def rgb_to_sh(rgb: torch.Tensor) -> torch.Tensor:
    """Band-0 SH coefficient that renders as ``rgb`` (the rasterizer adds 0.5)."""
    return (rgb - 0.5) / SH_C0


def sh_to_rgb(sh0: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_sh`."""
    return sh0 * SH_C0 + 0.5


class GaussianModel(torch.nn.Module):
    """3D Gaussians as raw parameters (the 3DGS / gsplat parametrisation).

    ``params`` (a :class:`torch.nn.ParameterDict`) holds ``means`` [N, 3], ``quats`` [N, 4]
    (wxyz, unnormalised), ``scales`` [N, 3] (log), ``opacities`` [N] (logits), ``sh0`` [N, 1, 3]
    (SH band 0) and ``shN`` [N, K - 1, 3] (bands 1..``sh_degree``, ``K = (sh_degree + 1)^2``).
    """

    def __init__(
        self,
        means: torch.Tensor,
        quats: torch.Tensor,
        scales: torch.Tensor,
        opacities: torch.Tensor,
        sh0: torch.Tensor,
        shN: torch.Tensor,
    ):
        super().__init__()
        n = means.shape[0]
        k = shN.shape[1] + 1
        degree = round(math.sqrt(k)) - 1
        if (degree + 1) ** 2 != k or not 0 <= degree <= 3:
            raise ValueError(f"shN must hold (d + 1)^2 - 1 coefficients for d in 0..3, got {shN.shape[1]}")
        shapes = {
            "means": (n, 3),
            "quats": (n, 4),
            "scales": (n, 3),
            "opacities": (n,),
            "sh0": (n, 1, 3),
            "shN": (n, k - 1, 3),
        }
        vals = dict(zip(PARAM_NAMES, (means, quats, scales, opacities, sh0, shN), strict=True))
        for name, shape in shapes.items():
            if tuple(vals[name].shape) != shape:
                raise ValueError(f"{name} must have shape {shape}, got {tuple(vals[name].shape)}")
        self.sh_degree = degree
        self.params = torch.nn.ParameterDict(
            {name: torch.nn.Parameter(vals[name].detach().clone()) for name in PARAM_NAMES}
        )

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_points(
        cls,
        points: torch.Tensor,
        colors: torch.Tensor | None = None,
        sh_degree: int = 3,
        init_opacity: float = 0.1,
        init_scale: float = 1.0,
    ) -> GaussianModel:
        """Isotropic Gaussians at ``points`` [P, 3] (P >= 4), coloured ``colors`` [P, 3] in [0, 1]
        (grey when ``None``), with scale ``init_scale`` times the mean distance to the 3 nearest
        neighbours (:func:`raysplat.knn_scale_init`), identity rotations and opacity
        ``init_opacity``."""
        points = points.detach().float()
        if points.dim() != 2 or points.shape[1] != 3 or points.shape[0] < 4:
            raise ValueError(f"points must have shape [P, 3] with P >= 4, got {tuple(points.shape)}")
        n = points.shape[0]
        if colors is None:
            colors = torch.full_like(points, 0.5)
        colors = colors.detach().float().to(points.device)
        log_s = knn_scale_init(points.cpu()).to(points.device) + math.log(init_scale)
        quats = torch.zeros(n, 4, device=points.device)
        quats[:, 0] = 1.0
        k = (sh_degree + 1) ** 2
        return cls(
            points,
            quats,
            log_s[:, None].repeat(1, 3),
            torch.full((n,), math.log(init_opacity / (1 - init_opacity)), device=points.device),
            rgb_to_sh(colors.clamp(0, 1))[:, None, :],
            torch.zeros(n, k - 1, 3, device=points.device),
        )

    @classmethod
    def random(
        cls,
        n: int,
        aabb: torch.Tensor,
        sh_degree: int = 3,
        generator: torch.Generator | None = None,
        **kwargs,
    ) -> GaussianModel:
        """``n`` Gaussians uniformly in the box ``aabb`` [6] with random colours (3DGS's init for
        scenes without points); ``kwargs`` as :meth:`from_points`."""
        aabb = aabb.detach().float().cpu()
        u = torch.rand(n, 3, generator=generator)
        pts = aabb[:3] + u * (aabb[3:] - aabb[:3])
        rgb = torch.rand(n, 3, generator=generator)
        return cls.from_points(pts, rgb, sh_degree=sh_degree, **kwargs)

    # ------------------------------------------------------------------ activated views

    def __len__(self) -> int:
        return int(self.params["means"].shape[0])

    @property
    def means(self) -> torch.Tensor:
        return self.params["means"]

    @property
    def quats(self) -> torch.Tensor:
        """Normalised wxyz quaternions."""
        return torch.nn.functional.normalize(self.params["quats"], dim=-1)

    @property
    def scales(self) -> torch.Tensor:
        return torch.exp(self.params["scales"])

    @property
    def opacities(self) -> torch.Tensor:
        return torch.sigmoid(self.params["opacities"])

    @property
    def colors(self) -> torch.Tensor:
        """SH coefficients [N, K, 3]."""
        return torch.cat([self.params["sh0"], self.params["shN"]], 1)

    def render(
        self,
        viewmats: torch.Tensor,
        Ks: torch.Tensor,
        width: int,
        height: int,
        sh_degree: int | None = None,
        backgrounds: torch.Tensor | None = None,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """:func:`raysplat.rasterization` of the model (SH degree ``sh_degree``, default the model's)."""
        deg = self.sh_degree if sh_degree is None else min(sh_degree, self.sh_degree)
        k = (deg + 1) ** 2
        colors = self.params["sh0"] if k == 1 else self.colors[:, :k]
        return rasterization(
            self.means,
            self.params["quats"],
            self.scales,
            self.opacities,
            colors,
            viewmats,
            Ks,
            width,
            height,
            sh_degree=deg,
            backgrounds=backgrounds,
            **kwargs,
        )
