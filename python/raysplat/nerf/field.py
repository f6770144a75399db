"""Radiance fields: a hash-grid (Instant-NGP style) density + view-dependent colour field, and
the density-only field used by proposal sampling. Positions are mapped into the hash grid's unit
cube by an axis-aligned box, optionally with mip-NeRF 360's scene contraction (unbounded scenes).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from raysplat.nerf.encoding import HashGrid, sh_encode
from raysplat.training.precision import Autocast


class _TruncExp(torch.autograd.Function):
    """``exp(x)`` with the gradient's exponent clamped at 15 (Instant-NGP's ``trunc_exp``)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, v_out):
        (x,) = ctx.saved_tensors
        return v_out * torch.exp(x.clamp(-15, 15))


def trunc_exp(x: torch.Tensor) -> torch.Tensor:
    """Density activation: ``exp`` with a clamped gradient."""
    return _TruncExp.apply(x)


def contract(x: torch.Tensor, kind: str = "linf") -> torch.Tensor:
    """Mip-NeRF 360 scene contraction of points ``x`` [N, 3] (unit box/ball kept, the rest of
    space squashed into radius 2): ``x`` if ``|x| <= 1`` else ``(2 - 1 / |x|) x / |x|``, with the
    L-inf (``"linf"``, Instant-NGP / nerfacc) or L2 (``"l2"``, mip-NeRF 360) norm."""
    if kind == "linf":
        mag = x.abs().amax(-1, keepdim=True)
    elif kind == "l2":
        mag = x.norm(dim=-1, keepdim=True)
    else:
        raise ValueError(f"contraction must be 'linf' or 'l2', got {kind!r}")
    safe = mag.clamp_min(1.0)
    return torch.where(mag <= 1.0, x, (2.0 - 1.0 / safe) * x / safe)


class SceneBox(torch.nn.Module):
    """Maps world positions to the unit cube: the box ``aabb`` fills it (bounded), or, with
    ``contraction``, the box maps to [-1, 1]^3, space beyond it is contracted into [-2, 2]^3,
    and that fills the unit cube. ``inside`` flags points the field models (always all when
    contracted)."""

    def __init__(self, aabb: Sequence[float] | torch.Tensor, contraction: str | None = None):
        super().__init__()
        self.register_buffer("aabb", torch.as_tensor(aabb, dtype=torch.float32).reshape(6).clone())
        self.contraction = contraction

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = self.aabb[:3], self.aabb[3:]
        u = (x - lo) / (hi - lo)
        if self.contraction is None:
            inside = ((u >= 0) & (u <= 1)).all(-1)
            return u, inside
        y = contract(u * 2.0 - 1.0, self.contraction)
        return (y + 2.0) / 4.0, torch.ones(x.shape[:-1], dtype=torch.bool, device=x.device)


def _mlp(d_in: int, hidden: int, layers: int, d_out: int) -> torch.nn.Sequential:
    mods: list[torch.nn.Module] = []
    d = d_in
    for _ in range(layers):
        mods += [torch.nn.Linear(d, hidden), torch.nn.ReLU(inplace=True)]
        d = hidden
    mods.append(torch.nn.Linear(d, d_out))
    return torch.nn.Sequential(*mods)


class RadianceField(Autocast, torch.nn.Module):
    """Hash grid -> small MLP -> (density, geometry features); features + SH-encoded view
    direction -> MLP -> RGB. ``density(x)`` is the density alone (occupancy updates, proposal
    culling). The MLPs run under :meth:`autocast` (``config.precision``; the hash-grid lookup,
    the SH encoding and the activations stay fp32, see :mod:`raysplat.training.precision`).

    Args:
        aabb: [6] box of the content (NDC box for forward-facing scenes).
        contraction: ``None`` (bounded), ``"linf"`` or ``"l2"`` (unbounded scenes).
        n_levels, n_feat, log2_table, base_res, max_res: hash-grid shape.
        hidden: width of both MLPs; geo_feat: geometry features passed to the colour MLP.
        sh_degree: spherical-harmonics degree of the view-direction encoding (1-4).
        density_bias: added to the density logit before ``trunc_exp``.
    """

    def __init__(
        self,
        aabb,
        contraction: str | None = None,
        n_levels: int = 16,
        n_feat: int = 2,
        log2_table: int = 17,
        base_res: int = 16,
        max_res: int = 1024,
        hidden: int = 64,
        geo_feat: int = 15,
        sh_degree: int = 4,
        color_layers: int = 2,
        density_bias: float = -1.0,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.box = SceneBox(aabb, contraction)
        self.grid = HashGrid(n_levels, n_feat, log2_table, base_res, max_res, generator=generator)
        self.density_mlp = _mlp(self.grid.out_dim, hidden, 1, 1 + geo_feat)
        self.sh_degree = sh_degree
        self.color_mlp = _mlp(geo_feat + sh_degree**2, hidden, color_layers, 3)
        self.density_bias = density_bias

    def density_net(self, u: torch.Tensor) -> torch.Tensor:
        """The density MLP's fp32 output ``[N, 1 + geo_feat]`` at unit-cube positions ``u``."""
        feats = self.grid(u)
        with self.autocast(feats):
            return self.density_mlp(feats).float()

    def color_net(self, geo: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """Colours ``[N, 3]`` (sigmoid in fp32) of geometry features and unit directions."""
        h = torch.cat([geo, sh_encode(F.normalize(d.reshape(-1, 3), dim=-1), self.sh_degree)], -1)
        with self.autocast(h):
            logits = self.color_mlp(h).float()
        return torch.sigmoid(logits)

    def _geo(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u, inside = self.box(x)
        h = self.density_net(u)
        sigma = trunc_exp(h[:, 0] + self.density_bias) * inside
        return sigma, h[:, 1:]

    def density(self, x: torch.Tensor) -> torch.Tensor:
        """Densities [N] of positions [N, 3]."""
        return self._geo(x.reshape(-1, 3))[0]

    def forward(self, x: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Densities [N] and colours [N, 3] of positions [N, 3] seen along unit directions [N, 3]."""
        sigma, geo = self._geo(x.reshape(-1, 3))
        return sigma, self.color_net(geo, d)

    def raw(self, x: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The density *logit* [N] (``density = trunc_exp(logit) * inside``), the in-box mask [N]
        (float) and colours [N, 3]: for samplers that modulate the density (ProNeRF)."""
        u, inside = self.box(x.reshape(-1, 3))
        h = self.density_net(u)
        logit = h[:, 0] + self.density_bias
        return logit, inside.to(logit.dtype), self.color_net(h[:, 1:], d)


class DensityField(Autocast, torch.nn.Module):
    """Density-only hash-grid field (a mip-NeRF 360 / nerfacc proposal network; its MLP under
    :meth:`autocast`, like :class:`RadianceField`'s)."""

    def __init__(
        self,
        aabb,
        contraction: str | None = None,
        n_levels: int = 5,
        log2_table: int = 17,
        base_res: int = 16,
        max_res: int = 128,
        hidden: int = 16,
        density_bias: float = -1.0,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.box = SceneBox(aabb, contraction)
        self.grid = HashGrid(n_levels, 2, log2_table, base_res, max_res, generator=generator)
        self.mlp = _mlp(self.grid.out_dim, hidden, 1, 1)
        self.density_bias = density_bias

    def density(self, x: torch.Tensor) -> torch.Tensor:
        """Densities [N] of positions [N, 3]."""
        u, inside = self.box(x.reshape(-1, 3))
        feats = self.grid(u)
        with self.autocast(feats):
            h = self.mlp(feats).float()
        return trunc_exp(h[:, 0] + self.density_bias) * inside
