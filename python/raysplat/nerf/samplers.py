"""The ways to place samples along rays, each also rendering the rays with a field:

* ``occgrid``: march an :class:`~raysplat.OccupancyGrid` (updated every 16 steps, all cells
  during warm-up), skip empty space, drop samples behind opaque ones (early stop).
* ``proposal``: mip-NeRF 360 proposal networks with nerfacc ``PropNetEstimator`` semantics:
  uniform start in normalised distance ``s``, per level inverse-CDF resampling from the previous
  level's histogram (residual transmittance forced into the last interval), the NeRF samples
  from the last proposal; the proposals learn from the interlevel loss only.
* ``hierarchical``: NeRF's coarse-to-fine sampling: stratified coarse samples rendered by a
  coarse radiance field, fine samples by importance sampling of the coarse weights; both fields
  learn from the photometric loss.

* ``pronerf``: ProNeRF's projection-aware sampling, 8-12 samples a ray predicted by two small
  networks (:mod:`raysplat.nerf.pronerf`).

A sampler's ``render(field, rays, ...)`` returns a :class:`RenderOut`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from raysplat.grid import OccupancyGrid
from raysplat.nerf.field import DensityField, RadianceField
from raysplat.sampling import importance_sampling, interlevel_loss, stratified_samples
from raysplat.training.precision import full_precision
from raysplat.volrend import render_weight_from_density, volume_render


@dataclass
class Rays:
    """A batch of rays: ``origins``/``directions`` [R, 3] where samples are placed (NDC for
    forward-facing scenes), ``viewdirs`` [R, 3] unit world directions for the colour, and the
    distance bounds ``near``/``far``."""

    origins: torch.Tensor
    directions: torch.Tensor
    viewdirs: torch.Tensor
    near: float
    far: float
    view_ids: torch.Tensor | None = None  #: [R, V] reference views per ray (pronerf)

    def __len__(self) -> int:
        return self.origins.shape[0]


@dataclass
class RenderOut:
    rgb: torch.Tensor  #: [R, 3]
    opacity: torch.Tensor  #: [R, 1]
    depth: torch.Tensor  #: [R, 1]
    n_samples: int  #: radiance-field samples evaluated (with gradient)
    aux_rgb: list[torch.Tensor] = field(default_factory=list)  #: extra renders to supervise
    aux_loss: torch.Tensor | None = None  #: extra loss (interlevel loss)
    edges: list[torch.Tensor] = field(default_factory=list)  #: per-level [R, S + 1] (dense)
    packed: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  #: (ray_indices, t0, t1)


def _render_dense(fld: RadianceField, rays: Rays, t: torch.Tensor, bkgd):
    mid = 0.5 * (t[:, 1:] + t[:, :-1])
    x = rays.origins[:, None] + mid[..., None] * rays.directions[:, None]
    s = mid.shape[1]
    d = rays.viewdirs[:, None].expand(-1, s, -1)
    sigma, rgb = fld(x.reshape(-1, 3), d.reshape(-1, 3))
    sigma, rgb = sigma.reshape(-1, s), rgb.reshape(-1, s, 3)
    return volume_render(t[:, :-1], t[:, 1:], sigma, rgb, render_bkgd=bkgd)


@torch.no_grad()
def refresh_occupancy(
    grid: OccupancyGrid,
    fld: RadianceField,
    step: int,
    step_size: float,
    threshold: float = 1e-2,
    warmup_steps: int = 256,
    generator=None,
) -> None:
    """One :meth:`OccupancyGrid.update` from the field: a cell's value is its opacity ``density *
    step_size`` (in chunks; the field in fp32 whatever ``config.precision``, see
    :func:`~raysplat.training.precision.full_precision`)."""
    with full_precision(fld):
        grid.update(
            step,
            lambda x: torch.cat([fld.density(c) for c in x.split(1 << 16)]) * step_size,
            threshold=threshold,
            warmup_steps=warmup_steps,
            generator=generator,
        )


class OccGridSampler(torch.nn.Module):
    """Occupancy-grid marching (nerfacc ``OccGridEstimator`` defaults, CPU-sized grid)."""

    name = "occgrid"

    def __init__(
        self,
        aabb,
        resolution: int = 64,
        levels: int = 1,
        render_step_size: float | None = None,
        cone_angle: float = 0.0,
        alpha_thre: float = 0.0,
        early_stop_eps: float = 1e-4,
        update_every: int = 16,
        warmup_steps: int = 256,
        occ_thre: float = 1e-2,
    ):
        super().__init__()
        self.grid = OccupancyGrid(aabb, resolution, levels)
        a = torch.as_tensor(aabb, dtype=torch.float32)
        self.render_step_size = render_step_size or float((a[3:] - a[:3]).norm()) / 256
        self.cone_angle, self.alpha_thre, self.early_stop_eps = cone_angle, alpha_thre, early_stop_eps
        self.update_every, self.warmup_steps, self.occ_thre = update_every, warmup_steps, occ_thre

    def update(self, step: int, fld: RadianceField, generator=None) -> None:
        """Refreshes the grid every ``update_every`` steps (:func:`refresh_occupancy`)."""
        if step % self.update_every == 0:
            refresh_occupancy(
                self.grid, fld, step, self.render_step_size, self.occ_thre, self.warmup_steps, generator
            )

    def render(
        self, fld: RadianceField, rays: Rays, bkgd=None, train=False, generator=None, step=0, stratified=None
    ):
        stratified = train if stratified is None else stratified
        n = len(rays)
        ri, t0, t1 = self.grid.sampling(
            rays.origins,
            rays.directions,
            near=rays.near,
            far=rays.far,
            render_step_size=self.render_step_size,
            density_fn=fld.density,
            early_stop_eps=self.early_stop_eps,
            alpha_thre=self.alpha_thre,
            cone_angle=self.cone_angle,
            stratified=stratified,
            generator=generator,
        )
        mid = 0.5 * (t0 + t1)
        x = rays.origins[ri] + mid[:, None] * rays.directions[ri]
        sigma, rgb = fld(x, rays.viewdirs[ri])
        color, opacity, depth, _ = volume_render(t0, t1, sigma, rgb, ri, n, render_bkgd=bkgd)
        return RenderOut(color, opacity, depth, int(ri.numel()), packed=(ri, t0, t1))


def _s_to_t(s: torch.Tensor, near: float, far: float, spacing: str) -> torch.Tensor:
    if spacing == "lindisp":
        return 1.0 / (s / far + (1.0 - s) / near)
    return s * far + (1.0 - s) * near


def _with_residual(w: torch.Tensor) -> torch.Tensor:
    """Weights with the residual transmittance added to the last interval (histogram sums to 1)."""
    rest = (1.0 - w.sum(-1, keepdim=True)).clamp_min(0.0)
    return torch.cat([w[:, :-1], w[:, -1:] + rest], -1)


def proposal_requires_grad(step: int, target: float = 5.0, num_steps: int = 1000) -> bool:
    """Stateless form of nerfacc's ``get_proposal_requires_grad_fn``: the proposals learn every
    step at first, then every ``1 + target`` steps after ``num_steps``."""
    every = 1 + int(min(step / num_steps, 1.0) * target)
    return step % every == 0


class ProposalSampler(torch.nn.Module):
    """Mip-NeRF 360 proposal sampling with ``len(prop_samples)`` density-only proposal fields."""

    name = "proposal"

    def __init__(
        self,
        aabb,
        contraction: str | None = None,
        prop_samples: tuple[int, ...] = (64,),
        num_samples: int = 32,
        spacing: str = "uniform",
        prop_max_res: tuple[int, ...] = (128, 256),
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.props = torch.nn.ModuleList(
            DensityField(
                aabb, contraction, max_res=prop_max_res[min(i, len(prop_max_res) - 1)], generator=generator
            )
            for i in range(len(prop_samples))
        )
        self.prop_samples, self.num_samples, self.spacing = tuple(prop_samples), num_samples, spacing

    def update(self, step, fld, generator=None) -> None:
        pass

    def render(
        self, fld: RadianceField, rays: Rays, bkgd=None, train=False, generator=None, step=0, stratified=None
    ):
        stratified = train if stratified is None else stratified
        n = len(rays)
        s = torch.tensor([[0.0, 1.0]], device=rays.origins.device).expand(n, 2)
        w = torch.ones((n, 1), device=s.device)
        need_grad = train and proposal_requires_grad(step)
        cached, edges = [], []
        for prop, n_s in zip(self.props, self.prop_samples, strict=True):
            s = importance_sampling(s, w, n_s, stratified=stratified, generator=generator)
            t = _s_to_t(s, rays.near, rays.far, self.spacing)
            mid = 0.5 * (t[:, 1:] + t[:, :-1])
            x = rays.origins[:, None] + mid[..., None] * rays.directions[:, None]
            with torch.set_grad_enabled(need_grad):
                sigma = prop.density(x.reshape(-1, 3)).reshape(n, n_s)
                wp, _, _ = render_weight_from_density(t[:, :-1], t[:, 1:], sigma)
                wp = _with_residual(wp)
            cached.append((s, wp))
            edges.append(t)
            w = wp.detach()
        s = importance_sampling(s, w, self.num_samples, stratified=stratified, generator=generator)
        t = _s_to_t(s, rays.near, rays.far, self.spacing)
        edges.append(t)
        color, opacity, depth, weights = _render_dense(fld, rays, t, bkgd)
        aux = None
        if need_grad:
            wn = _with_residual(weights.detach())
            aux = sum(interlevel_loss(sp, wp, s, wn) for sp, wp in cached)
        return RenderOut(color, opacity, depth, n * self.num_samples, aux_loss=aux, edges=edges)


class HierarchicalSampler(torch.nn.Module):
    """NeRF coarse-to-fine sampling with its own (smaller) coarse radiance field."""

    name = "hierarchical"

    def __init__(
        self,
        aabb,
        contraction: str | None = None,
        n_coarse: int = 32,
        n_fine: int = 48,
        spacing: str = "linear",
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.coarse = RadianceField(
            aabb, contraction, n_levels=8, max_res=256, log2_table=16, hidden=32, generator=generator
        )
        self.n_coarse, self.n_fine, self.spacing = n_coarse, n_fine, spacing

    def update(self, step, fld, generator=None) -> None:
        pass

    def render(
        self, fld: RadianceField, rays: Rays, bkgd=None, train=False, generator=None, step=0, stratified=None
    ):
        stratified = train if stratified is None else stratified
        n = len(rays)
        near = torch.full((n,), rays.near, device=rays.origins.device)
        far = torch.full((n,), rays.far, device=rays.origins.device)
        tc = stratified_samples(
            near, far, self.n_coarse, self.spacing, stratified=stratified, generator=generator
        )
        with torch.set_grad_enabled(train and torch.is_grad_enabled()):
            rgb_c, _, _, wc = _render_dense(self.coarse, rays, tc, bkgd)
        tf = importance_sampling(tc, wc.detach(), self.n_fine, stratified=stratified, generator=generator)
        color, opacity, depth, _ = _render_dense(fld, rays, tf, bkgd)
        return RenderOut(
            color,
            opacity,
            depth,
            n * (self.n_coarse + self.n_fine),
            aux_rgb=[rgb_c] if train else [],
            edges=[tc, tf],
        )


SAMPLERS = ("occgrid", "proposal", "hierarchical", "pronerf")
