"""Text-to-3D by score distillation (DreamFusion SDS, ProlificDreamer VSD) on the shared training
layer: :class:`Trainer` optimises ``n_particles`` 3D models — hash-grid NeRFs with an occupancy
grid or a proposal sampler (:mod:`raysplat.nerf`) or 3D Gaussians (:func:`raysplat.rasterization`,
optionally densified by :mod:`raysplat.gs.strategy`) — so that their
renders from random cameras look like samples of a :class:`~raysplat.guidance.DiffusionPrior`.

Each step (threestudio's loop, batch 1): draw a particle uniformly; draw a camera on a sphere
around the origin (world up +y; distance / elevation / azimuth / vertical FOV uniform in their
ranges, looking at the origin); render it (NeRF shading: albedo, or with ``shading="random"``
albedo / Lambertian / textureless with a light near the camera, normals from central differences
of the density); composite over the background (learned MLP of the view direction, a random
colour, white or black); take the SDS or VSD loss of :mod:`raysplat.distill` with the view's
``c2w``/``K`` (and, for text priors, the ", front / side / back view" prompt of the azimuth);
for VSD also one step of ε_φ on the detached render. Regularisers: mean opacity
(``lambda_sparsity``), opacity entropy (``lambda_opaque``) and DreamFusion's orientation loss
``Σ w_i max(0, n_i·d)²`` (``lambda_orient``; weights detached). The NeRF starts from a density blob
(Magic3D: ``density_blob (1 - r / blob_radius)`` added to the density logit).
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from raysplat.cameras import c2w_to_viewmat, look_at
from raysplat.distill import (
    DEFAULT_GUIDANCE,
    TimestepSchedule,
    choose_particle,
    lora_loss,
    make_variational_score,
    sds_loss,
    vsd_loss,
)
from raysplat.guidance.base import DiffusionPrior
from raysplat.metrics import psnr
from raysplat.nerf.field import RadianceField, trunc_exp
from raysplat.nerf.samplers import OccGridSampler, ProposalSampler, Rays
from raysplat.rays import generate_rays
from raysplat.text3d.config import Text3DConfig
from raysplat.text3d.score import RenderedScore
from raysplat.training.config import check_device
from raysplat.training.precision import (
    Autocast,
    GradScaling,
    autocast,
    check_precision,
    set_network_precision,
)
from raysplat.training.trainer import TestView
from raysplat.training.trainer import Trainer as BaseTrainer

_UP = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
_BG = {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0)}


# ----------------------------------------------------------------------------------- priors


def load_prior(spec: str, device: str | torch.device = "cpu") -> DiffusionPrior:
    """A prior from a CLI / config spec: ``"tiny"`` (a random tiny Stable Diffusion, written once
    to the temp directory), ``"mixture:NAME"`` (:class:`~raysplat.guidance.GaussianMixturePrior`
    with its built-in targets; ``NAME`` is the prompt), ``"mesh:PATH"`` or ``"mesh:sample"``
    (:class:`~raysplat.guidance.RenderedMeshPrior`), else a diffusers directory / hub id."""
    from raysplat import guidance

    if not isinstance(spec, str) or not spec:
        raise ValueError(
            f"prior must be 'tiny', 'mixture:NAME', 'mesh:PATH' or a diffusers path, got {spec!r}"
        )
    if spec == "tiny":
        d = Path(tempfile.gettempdir()) / "raysplat-tiny-sd-v1-seed0"
        if not (d / "model_index.json").is_file():
            guidance.tiny_stable_diffusion(d, seed=0)
        return guidance.StableDiffusionPrior.from_pretrained(d, device=device)
    if spec.startswith("mixture:"):
        return guidance.GaussianMixturePrior()
    if spec.startswith("mesh:"):
        path = spec[len("mesh:") :]
        return guidance.RenderedMeshPrior("sample" if path in ("", "sample") else path)
    return guidance.StableDiffusionPrior.from_pretrained(spec, device=device)


# ----------------------------------------------------------------------------------- cameras


def sample_cameras(cfg: Text3DConfig, n: int, size: int, generator: torch.Generator):
    """``n`` random cameras: ``(c2w [n, 4, 4], K [n, 3, 3], azimuth_deg [n], eye [n, 3])``."""

    def uni(r):
        return r[0] + (r[1] - r[0]) * torch.rand(n, generator=generator, dtype=torch.float64)

    dist, elev, azim, fovy = (
        uni(cfg.camera_distance),
        uni(cfg.elevation_range),
        uni(cfg.azimuth_range),
        uni(cfg.fovy_range),
    )
    return _cameras(dist, elev, azim, fovy, size)


def _cameras(dist, elev, azim, fovy, size):
    e, a = torch.deg2rad(elev), torch.deg2rad(azim)
    eye = torch.stack([dist * e.cos() * a.sin(), dist * e.sin(), dist * e.cos() * a.cos()], -1)
    c2w = look_at(eye, torch.zeros(3, dtype=torch.float64), _UP)
    c2w = torch.cat(
        [c2w, torch.tensor([0.0, 0, 0, 1], dtype=torch.float64).expand(len(eye), 1, 4)], 1
    ).float()
    f = 0.5 * size / torch.tan(0.5 * torch.deg2rad(fovy))
    K = torch.zeros(len(eye), 3, 3)
    K[:, 0, 0], K[:, 1, 1] = f.float(), f.float()
    K[:, 0, 2], K[:, 1, 2], K[:, 2, 2] = size / 2, size / 2, 1.0
    return c2w, K, azim.float(), eye.float()


def view_suffix(azimuth_deg: float) -> str:
    """threestudio's view-dependent prompting: front within 45° of +z, back beyond 135°, else side."""
    a = (azimuth_deg + 180.0) % 360.0 - 180.0
    return ", front view" if abs(a) < 45 else (", back view" if abs(a) > 135 else ", side view")


# ----------------------------------------------------------------------------------- models


class _Field(RadianceField):
    """The radiance field with Magic3D's density blob added to the density logit."""

    def __init__(self, aabb, blob: float, blob_radius: float, **kw):
        super().__init__(aabb, None, **kw)
        self.blob, self.blob_radius = blob, blob_radius

    def _geo(self, x):
        u, inside = self.box(x)
        h = self.density_net(u)
        prior = self.blob * (1 - x.norm(dim=-1) / self.blob_radius)
        return trunc_exp(h[:, 0] + prior) * inside, h[:, 1:]


class _Shaded(nn.Module):
    """Wraps a field for one render: colours shaded by ``mode`` (albedo / lambertian / textureless)."""

    def __init__(
        self, field: _Field, mode: str, light: torch.Tensor | None, eps: float = 1e-2, orient: bool = False
    ):
        super().__init__()
        self.field, self.mode, self.light, self.eps, self.orient = field, mode, light, eps, orient
        #: with ``orient``: per-sample ``(sigma, max(0, n·d)²)`` of the last forward (n with gradient)
        self.orient_terms: tuple[torch.Tensor, torch.Tensor] | None = None

    def density(self, x):
        return self.field.density(x)

    def forward(self, x, d):
        sigma, rgb = self.field(x, d)
        if self.orient:  # DreamFusion's orientation loss: normals must not face away from the camera
            e = torch.eye(3, device=x.device) * self.eps
            grad = torch.stack(
                [self.field.density(x + e[i]) - self.field.density(x - e[i]) for i in range(3)], -1
            )
            n = -F.normalize(grad, dim=-1)
            self.orient_terms = (sigma, (n * F.normalize(d, dim=-1)).sum(-1).clamp(min=0) ** 2)
        if self.mode == "albedo":
            return sigma, rgb
        with torch.no_grad():
            e = torch.eye(3, device=x.device) * self.eps
            grad = torch.stack(
                [self.field.density(x + e[i]) - self.field.density(x - e[i]) for i in range(3)], -1
            )
            n = -F.normalize(grad, dim=-1)
            lam = (n * F.normalize(self.light - x, dim=-1)).sum(-1, keepdim=True).clamp(min=0)
        shade = 0.2 + 0.8 * lam
        base = torch.ones_like(rgb) if self.mode == "textureless" else rgb
        return sigma, base * shade


class NerfParticle(nn.Module):
    """One NeRF particle: hash-grid field + occupancy-grid sampler (``sampler="occgrid"``) or
    Mip-NeRF 360 proposal sampler (``"proposal"``: density-only hash-grid proposal fields trained
    with the interlevel loss, :class:`~raysplat.nerf.samplers.ProposalSampler`; rays run between
    the camera's entry into and exit from the bounding sphere of the scene box)."""

    def __init__(self, cfg: Text3DConfig, generator: torch.Generator):
        super().__init__()
        r = cfg.radius
        aabb = [-r, -r, -r, r, r, r]
        self.field = _Field(
            aabb,
            cfg.density_blob,
            cfg.blob_radius,
            n_levels=cfg.n_levels,
            log2_table=cfg.log2_table,
            max_res=cfg.max_res,
            hidden=cfg.hidden,
            generator=generator,
        )
        self.radius = r
        if cfg.sampler == "proposal":
            self.sampler = ProposalSampler(
                aabb, None, cfg.prop_samples, cfg.num_samples, "uniform", generator=generator
            )
        else:
            self.sampler = OccGridSampler(
                aabb, resolution=cfg.grid_resolution, render_step_size=2 * r * math.sqrt(3) / 256
            )
        self.step = 0
        #: the proposal sampler's interlevel loss of the last training render (else None)
        self.aux_loss = None

    def param_groups(self, cfg):
        grid = [p for n, p in self.field.named_parameters() if "grid" in n]
        mlp = [p for n, p in self.field.named_parameters() if "grid" not in n]
        groups = [{"params": grid, "lr": cfg.lr}, {"params": mlp, "lr": cfg.mlp_lr}]
        props = list(self.sampler.parameters())
        if props:  # the proposal fields: hash grids + tiny MLPs, at the grid's learning rate
            groups.append({"params": props, "lr": cfg.lr})
        return groups

    def update(self, step, generator):
        self.step = step
        self.sampler.update(step, self.field, generator=generator)

    def render(self, c2w, K, size, train, generator=None, shading="albedo", light=None, orient=False):
        """``(rgb [B, H, W, 3] without background, opacity [B, H, W, 1])``; with ``orient`` the
        orientation loss is left in :attr:`orient_loss` (weights detached, threestudio); with
        the proposal sampler its interlevel loss in :attr:`aux_loss` (training renders)."""
        o, d = generate_rays(c2w[:, :3], K, size, size)
        o, d = o.reshape(-1, 3), d.reshape(-1, 3)
        fld = _Shaded(self.field, shading, light, orient=orient)
        near, far = 0.0, 1e10
        if isinstance(self.sampler, ProposalSampler):  # bounded rays: the scene box's bounding sphere
            dist = c2w[:, :3, 3].norm(dim=-1)
            reach = self.radius * math.sqrt(3)
            near, far = max(float(dist.min()) - reach, 0.0), float(dist.max()) + reach
        rays = Rays(o, d, F.normalize(d, dim=-1), near, far)
        out = self.sampler.render(fld, rays, None, train=train, generator=generator, step=self.step)
        self.aux_loss = out.aux_loss if train else None
        b = c2w.shape[0]
        self.orient_loss = None
        if orient and fld.orient_terms is not None:
            from raysplat.volrend import render_weight_from_density

            sigma, term = fld.orient_terms
            if out.packed is not None:
                ri, t0, t1 = out.packed
                w = render_weight_from_density(t0, t1, sigma.detach(), ri, len(rays))[0]
            else:  # dense samples between the last edges (proposal sampler)
                t = out.edges[-1]
                s = sigma.detach().reshape(t.shape[0], -1)
                w = render_weight_from_density(t[:, :-1], t[:, 1:], s)[0].reshape(-1)
            self.orient_loss = (w * term).sum() / out.opacity.detach().gt(0).sum().clamp(min=1)
        return out.rgb.reshape(b, size, size, 3), out.opacity.reshape(b, size, size, 1)


class GSParticle(nn.Module):
    """One 3D-Gaussian particle (SH degree 0). With ``config.densify`` its Gaussians are cloned,
    split and pruned by the 3DGS trainer's :class:`~raysplat.gs.strategy.DensityControl` (the
    statistics come from the distillation loss's gradient on the projected means); otherwise
    the count stays ``n_gaussians``."""

    def __init__(self, cfg: Text3DConfig, generator: torch.Generator):
        super().__init__()
        from raysplat.gs.model import GaussianModel

        n = cfg.n_gaussians
        u = torch.randn(n, 3, generator=generator)
        r = cfg.blob_radius * torch.rand(n, 1, generator=generator) ** (1 / 3)
        pts = F.normalize(u, dim=-1) * r
        self.model = GaussianModel.from_points(
            pts, torch.rand(n, 3, generator=generator), sh_degree=0, init_opacity=0.1
        )

    def param_groups(self, cfg):
        p = self.model.params
        return [
            {"params": [p["means"]], "lr": 1e-3 * cfg.radius},
            {"params": [p["scales"]], "lr": 5e-3},
            {"params": [p["quats"]], "lr": 1e-3},
            {"params": [p["opacities"]], "lr": 5e-2},
            {"params": [p["sh0"]], "lr": cfg.lr},
            {"params": [p["shN"]], "lr": cfg.lr / 20},
        ]

    def update(self, step, generator):
        return None

    def render(self, c2w, K, size, train, generator=None, shading="albedo", light=None, orient=False):
        self.orient_loss = None
        img, alpha, meta = self.model.render(c2w_to_viewmat(c2w), K, size, size)
        #: the rasterization metadata of the last training render (densification statistics)
        self.meta = meta if train else None
        if train and self.density is not None:
            self.density.pre_backward(meta)
        return img, alpha

    density = None  #: the DensityControl (set by the trainer when densifying)

    def enable_densify(self, cfg: Text3DConfig, optimizer: torch.optim.Optimizer, generator) -> None:
        """Attaches a :class:`~raysplat.gs.strategy.DensityControl` (extent: the scene radius)
        working on ``optimizer`` (one Adam, one param group per parameter)."""
        from raysplat.gs.strategy import DensityControl

        opts = dict.fromkeys(self.model.params, optimizer)
        self.density = DensityControl(self.model, opts, cfg.densify, cfg.radius, generator)

    def resize_like(self, params: dict) -> None:
        """Replaces the parameters by empty ones of the sizes in ``params`` (before loading a
        densified checkpoint)."""
        for k, v in params.items():
            name = k.split(".")[-1]
            self.model.params[name] = nn.Parameter(torch.empty_like(v, device=self.model.means.device))


class Background(Autocast, nn.Module):
    """A learned environment colour: a small MLP of the view direction (threestudio's
    neural environment map; under :meth:`autocast`, sigmoid in fp32)."""

    def __init__(self, hidden: int = 16):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, hidden), nn.ReLU(), nn.Linear(hidden, 3))

    def forward(self, d):
        with self.autocast(d):
            h = self.net(d).float()
        return torch.sigmoid(h)


# ----------------------------------------------------------------------------------- trainer


class Trainer(BaseTrainer):
    """Text-to-3D on the shared lifecycle.

    Example::

        from raysplat.guidance import RenderedMeshPrior
        from raysplat.text3d import Text3DConfig, Trainer

        trainer = Trainer(RenderedMeshPrior("sample"), "mesh",
                          Text3DConfig(steps=500, background="white", shading="albedo"))
        trainer.run("runs/text3d")

    ``prior`` is a :class:`~raysplat.guidance.DiffusionPrior`, a spec string for
    :func:`load_prior`, or ``None`` (render only). A restored checkpoint loads the prior of its
    ``config.prior`` spec only when training or evaluation needs it (``lazy_prior``), so
    ``raysplat render`` never loads a diffusion model.
    """

    method = "text3d"
    config_class = Text3DConfig

    def __init__(
        self,
        prior: DiffusionPrior | str | None,
        prompt: str | None = None,
        config: Text3DConfig | None = None,
        *,
        lazy_prior: bool = False,
    ):
        config = config or Text3DConfig()
        if isinstance(prior, str):
            config = config.replace(prior=prior)
        if prompt is not None:
            config = config.replace(prompt=prompt)
        super().__init__(config)
        cfg = self.config
        self.device = check_device(cfg.device)
        if prior is not None and not isinstance(prior, (DiffusionPrior, str)):
            raise TypeError(
                f"prior must be a DiffusionPrior, a spec string or None, got {type(prior).__name__}"
            )
        torch.manual_seed(cfg.seed)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        #: the generator of device-side sampling (occupancy grid, stratified marching)
        self.device_gen = torch.Generator(self.device).manual_seed(cfg.seed)
        init = torch.Generator().manual_seed(cfg.seed)
        cls = NerfParticle if cfg.representation == "nerf" else GSParticle
        self.particles = nn.ModuleList([cls(cfg, init) for _ in range(cfg.n_particles)]).to(self.device)
        self.background = Background().to(self.device)
        #: the autocast dtype of the networks and the prior (None: fp32), and fp16 loss scaling
        self.amp_dtype = check_precision(cfg.precision, self.device)
        self.scaling = GradScaling(cfg.precision, self.device)
        set_network_precision(self.particles, cfg.precision)
        set_network_precision(self.background, cfg.precision)
        self._make_optimizers()
        self.bg_optimizer = torch.optim.Adam(
            self.background.parameters(), lr=cfg.mlp_lr, betas=(0.9, 0.99), eps=1e-15
        )
        self.guidance_scale = (
            cfg.guidance_scale if cfg.guidance_scale is not None else DEFAULT_GUIDANCE[cfg.method]
        )
        self.phi, self.phi_optimizer = None, None
        self._emb: dict[str, torch.Tensor] = {}
        self._tests: list[TestView] | None = None
        self._pending_phi: tuple | None = None
        self._prior: DiffusionPrior | None = None
        self._prior_spec = prior if isinstance(prior, str) else None
        self._set_schedule(1000)
        if isinstance(prior, DiffusionPrior):
            self._attach(prior)
        elif isinstance(prior, str) and not lazy_prior:
            self._attach(load_prior(prior, self.device))

    def _make_optimizers(self) -> None:
        cfg = self.config
        self.optimizers = [
            torch.optim.Adam(p.param_groups(cfg), betas=(0.9, 0.99), eps=1e-15) for p in self.particles
        ]
        if cfg.representation == "gs" and cfg.densify is not None:
            #: the generator of the Gaussians' splits (checkpointed)
            self.densify_gen = torch.Generator().manual_seed(cfg.seed + 2)
            for p, opt in zip(self.particles, self.optimizers, strict=True):
                p.enable_densify(cfg, opt, self.densify_gen)

    @property
    def prior(self) -> DiffusionPrior | None:
        """The diffusion prior (loaded from ``config.prior`` on first use after a restore)."""
        if self._prior is None and self._prior_spec:
            self._attach(load_prior(self._prior_spec, self.device))
        return self._prior

    def _set_schedule(self, T: int) -> None:
        cfg = self.config
        self.schedule = TimestepSchedule(
            int(T * cfg.min_step_percent),
            int(T * cfg.max_step_percent),
            cfg.anneal_step,
            int(T * cfg.anneal_max_step_percent),
        )

    def _attach(self, prior: DiffusionPrior) -> None:
        """Uses ``prior``: timestep schedule, prompt embeddings (unknown prompts fail here,
        before any training) and, for VSD, the variational score ε_φ and its optimiser."""
        cfg = self.config
        self._prior = prior
        self._set_schedule(prior.num_train_timesteps)
        if cfg.method == "vsd":
            with torch.no_grad():
                channels = prior.encode(
                    torch.zeros(1, 3, cfg.render_size, cfg.render_size, device=self.device)
                ).shape[1]
            kind = cfg.score
            if kind == "auto":
                own = prior.variational_score()
                unet = hasattr(prior, "unet") and hasattr(prior, "unet_eps")
                kind = "own" if own is not None else ("lora" if unet else "rendered")
            if kind == "rendered":
                self.phi = self._rendered_score(prior)
                scale = cfg.score_lr_scale  # ε_φ must track the particles faster than they move
                groups = [
                    dict(g, lr=g["lr"] * scale) for c in self.phi.components for g in c.param_groups(cfg)
                ]
                groups.append({"params": [self.phi.log_weights, self.phi.log_std], "lr": cfg.lora_lr})
                self.phi_optimizer = torch.optim.Adam(groups, betas=(0.9, 0.99), eps=1e-15)
            else:
                kw = {"rank": cfg.lora_rank} if kind == "lora" else {"channels": channels}
                with torch.random.fork_rng(devices=[]):  # ε_φ's init never shifts the global RNG
                    torch.manual_seed(cfg.seed + 1)
                    self.phi = make_variational_score(prior, kind="auto" if kind == "own" else kind, **kw)
                params = [p for p in self.phi.parameters() if p.requires_grad]
                self.phi_optimizer = torch.optim.AdamW(params, lr=cfg.lora_lr, betas=(0.9, 0.99), eps=1e-15)
            if self._pending_phi is not None:
                self.phi.load_state_dict(self._pending_phi[0])
                self.phi_optimizer.load_state_dict(self._pending_phi[1])
                self._pending_phi = None
        self._embed(cfg.prompt)
        self._embed(cfg.negative_prompt)

    def _rendered_score(self, prior: DiffusionPrior) -> RenderedScore:
        """ε_φ as a mixture of renders of its own 3D models (the particles' kind, own seed)."""
        cfg = self.config
        cls = NerfParticle if cfg.representation == "nerf" else GSParticle
        init = torch.Generator().manual_seed(cfg.seed + 1)
        n = cfg.score_components or cfg.n_particles
        comps = nn.ModuleList([cls(cfg, init) for _ in range(n)]).to(self.device)
        set_network_precision(comps, cfg.precision)
        return RenderedScore(prior, comps, self._render_score_component)

    def _render_score_component(self, k: int, c2w: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
        """ε_φ's component ``k`` rendered as the particle of this step was (size, shading, light,
        background): ``[B, 3, H, W]`` in [0, 1]."""
        view = getattr(self, "_score_view", None)
        if view is None:  # outside a training step: the default view on the eval background
            size = self.config.render_size
            view = (size, "albedo", None, self._bg_image(c2w, K, size, self.config.background, False))
        size, shading, light, bg = view
        comp = self.phi.components[k]
        comp.train()
        rgb, alpha = comp.render(c2w, K, size, True, self.device_gen, shading, light)
        return (rgb + (1 - alpha) * bg).permute(0, 3, 1, 2).clamp(0, 1)

    # ------------------------------------------------------------------ helpers
    def _embed(self, text: str) -> torch.Tensor:
        if text not in self._emb:
            self._emb[text] = self.prior.embed_prompts([text])
        return self._emb[text]

    def _view_dependent(self) -> bool:
        return self.config.view_dependent_prompts and not getattr(self.prior, "named_prompts", False)

    def _bg_image(self, c2w, K, size, kind: str, train: bool):
        b = c2w.shape[0]
        if kind == "learned":
            _, d = generate_rays(c2w[:, :3], K, size, size)
            return self.background(F.normalize(d.reshape(b, size, size, 3), dim=-1))
        if kind == "random":
            if train:
                return torch.rand(b, 1, 1, 3, generator=self.gen).to(self.device).expand(b, size, size, 3)
            kind = "white"
        return torch.tensor(_BG[kind], device=self.device).expand(b, size, size, 3)

    def render_particle(
        self,
        i: int,
        c2w,
        K,
        size: int,
        train=False,
        shading="albedo",
        light=None,
        background: str | None = None,
        orient: bool = False,
    ):
        """``(rgb [B, H, W, 3] on the background, opacity [B, H, W, 1])`` of particle ``i``."""
        rgb, alpha = self.particles[i].render(
            c2w.to(self.device),
            K.to(self.device),
            size,
            train,
            self.device_gen if train else None,
            shading,
            light,
            orient,
        )
        bg = self._bg_image(
            c2w.to(self.device), K.to(self.device), size, background or self.config.background, train
        )
        self._last_bg = bg
        return rgb + (1 - alpha) * bg, alpha

    # ------------------------------------------------------------------ training
    def _train_step(self) -> dict:
        cfg, g = self.config, self.gen
        if self.prior is None:
            raise ValueError("this trainer has no prior (pass one to Trainer or load_checkpoint to train)")
        i = choose_particle(cfg.n_particles, g) if cfg.n_particles > 1 else 0
        size = cfg.render_size
        if cfg.render_size_late is not None and self.step >= cfg.render_size_step:
            size = cfg.render_size_late
        c2w, K, azim, eye = sample_cameras(cfg, 1, size, g)
        particle = self.particles[i]
        particle.train()
        particle.update(self.step, self.device_gen)
        shading, light = "albedo", None
        if cfg.shading == "random" and cfg.representation == "nerf":
            u = float(torch.rand(1, generator=g))
            shading = (
                "albedo"
                if u < cfg.albedo_ratio
                else ("lambertian" if u < (1 + cfg.albedo_ratio) / 2 else "textureless")
            )
            light = (eye[0] * (1 + 0.5 * torch.rand(1, generator=g)) + 0.3 * torch.randn(3, generator=g)).to(
                self.device
            )
        orient = bool(cfg.lambda_orient) and cfg.representation == "nerf"
        img, alpha = self.render_particle(
            i, c2w, K, size, train=True, shading=shading, light=light, orient=orient
        )
        rendered_phi = isinstance(self.phi, RenderedScore)
        if rendered_phi:  # ε_φ's models see this step's view exactly as the particle does
            self._score_view = (size, shading, light, self._last_bg.detach())
            for comp in self.phi.components:
                comp.update(self.step, self.device_gen)
        x = img.permute(0, 3, 1, 2).clamp(0, 1)
        text = cfg.prompt + (view_suffix(float(azim[0])) if self._view_dependent() else "")
        cond, uncond = self._embed(text), self._embed(cfg.negative_prompt)
        t = self.schedule.sample(self.step, 1, g, self.device)
        noise_shape = None
        with autocast(self.amp_dtype, self.device):  # the prior's networks in `precision`
            z = self.prior.encode(x)
        if self.amp_dtype is not None:
            z = z.float()
        noise_shape = z.shape
        noise = torch.randn(noise_shape, generator=g).to(self.device, z.dtype)
        kw = dict(
            uncond=uncond,
            guidance_scale=self.guidance_scale,
            cfg_convention=cfg.cfg_convention,
            weighting=cfg.weighting,
            grad_clip=cfg.grad_clip,
            latents=True,
            noise=noise,
            c2w=c2w.to(self.device),
            K=K.to(self.device),
        )
        at_camera = self.phi.at_camera(kw["c2w"], kw["K"]) if rendered_phi else contextlib.nullcontext()
        with at_camera:
            stats = self._distill(i, particle, z, cond, t, alpha, orient, kw)
        self._score_view = None
        self.scaling.update()
        return stats

    def _distill(self, i, particle, z, cond, t, alpha, orient, kw) -> dict:
        """The distillation update of particle ``i`` from its encoded render ``z`` and, for VSD,
        ε_φ's update on the same render."""
        cfg = self.config
        with autocast(self.amp_dtype, self.device):
            if cfg.method == "sds":
                out = sds_loss(self.prior, z, cond, t, **kw)
            else:
                out = vsd_loss(self.prior, self.phi, z, cond, t, phi_cond=self._embed(cfg.prompt), **kw)
        loss = out.loss.float()
        if cfg.lambda_sparsity:
            loss = loss + cfg.lambda_sparsity * alpha.mean()
        if orient and particle.orient_loss is not None:
            loss = loss + cfg.lambda_orient * particle.orient_loss
        if getattr(particle, "aux_loss", None) is not None:  # proposal sampler's interlevel loss
            loss = loss + particle.aux_loss
        if cfg.lambda_opaque:
            a = alpha.clamp(1e-5, 1 - 1e-5)
            loss = loss + cfg.lambda_opaque * (-(a * a.log() + (1 - a) * (1 - a).log())).mean()
        opt = self.optimizers[i]
        opt.zero_grad(set_to_none=True)
        self.bg_optimizer.zero_grad(set_to_none=True)
        if loss.requires_grad:
            self.scaling.backward(loss)
            self.scaling.step(opt)
            if cfg.background == "learned":
                self.scaling.step(self.bg_optimizer)
        stats = {"loss": float(out.loss.detach()), "t": float(t[0]), "particle": float(i)}
        density = getattr(particle, "density", None)
        if density is not None:  # step + 1: DensityControl's steps are 1-based
            info = density.post_backward(self.step + 1, particle.meta)
            stats.update(n_gaussians=float(len(particle.model)), cloned=float(info["cloned"]))
            stats.update(split=float(info["split"]), pruned=float(info["pruned"]))
        if cfg.method == "vsd":
            self.phi_optimizer.zero_grad(set_to_none=True)
            with autocast(self.amp_dtype, self.device):
                l_phi = lora_loss(
                    self.prior,
                    self.phi,
                    z.detach(),
                    self._embed(cfg.prompt),
                    c2w=kw["c2w"],
                    K=kw["K"],
                    camera_dropout=cfg.camera_dropout,
                    generator=self.gen,
                )
            l_phi = cfg.lambda_lora * l_phi.float()
            self.scaling.backward(l_phi)
            self.scaling.step(self.phi_optimizer)
            stats["lora_loss"] = float(l_phi.detach())
        return stats

    # ------------------------------------------------------------------ rendering
    @torch.no_grad()
    def render(
        self, c2w: torch.Tensor, K: torch.Tensor, width: int, height: int, particle: int = 0
    ) -> torch.Tensor:
        """Renders particle ``particle`` from OpenGL ``c2w [B, 3|4, 4]``, ``K [3, 3]`` or ``[B, 3, 3]``
        to ``[B, H, W, 3]`` in [0, 1] (evaluation background: white for 'random')."""
        c2w = c2w.reshape(-1, *c2w.shape[-2:]).float()
        if c2w.shape[-2] == 3:
            c2w = torch.cat([c2w, torch.tensor([0.0, 0, 0, 1]).expand(c2w.shape[0], 1, 4)], 1)
        K = K.float().reshape(-1, 3, 3).expand(c2w.shape[0], 3, 3)
        self.particles[particle].eval()
        out = []
        for j in range(c2w.shape[0]):  # square renders, cropped / padded by K's principal point
            s = max(width, height)
            k = K[j].clone()
            k[0, 2] += (s - width) / 2
            k[1, 2] += (s - height) / 2
            img, _ = self.render_particle(particle, c2w[j : j + 1], k[None], s, train=False)
            y0, x0 = (s - height) // 2, (s - width) // 2
            out.append(img[0, y0 : y0 + height, x0 : x0 + width])
        return torch.stack(out).clamp(0, 1).cpu()

    def eval_cameras(self, n: int | None = None, size: int | None = None):
        """Held-out cameras: evenly spaced azimuths (offset 22.5°) at 15° elevation, the middle
        distance and FOV of the training ranges."""
        cfg = self.config
        n = cfg.eval_views if n is None else n
        size = cfg.eval_size if size is None else size
        az = torch.arange(n, dtype=torch.float64) * 360.0 / n + 22.5
        full = torch.full((n,), 1.0, dtype=torch.float64)
        return _cameras(
            full * sum(cfg.camera_distance) / 2, full * 15.0, az, full * sum(cfg.fovy_range) / 2, size
        )

    def test_views(self) -> list[TestView]:
        """Held-out views scored against a camera-aware prior's renders (none for other priors)."""
        if self._tests is None:
            self._tests = []
            render = getattr(self.prior, "render", None)
            if self.prior is not None and getattr(self.prior, "camera_aware", False) and callable(render):
                c2w, K, _, _ = self.eval_cameras()
                s = self.config.eval_size
                for j in range(c2w.shape[0]):
                    self._tests.append(
                        TestView(j, c2w[j], K[j], render(c2w[j : j + 1], K[j : j + 1], s, s)[0])
                    )
        return self._tests

    def camera_path(self, kind: str, frames: int):
        """A turntable (``"turntable"`` / ``"spiral"``) at 15° elevation, or the held-out views
        (``"test"``)."""
        if kind == "test":
            c2w, K, _, _ = self.eval_cameras()
        else:
            if frames < 1:
                raise ValueError(f"frames must be >= 1, got {frames}")
            c2w, K, _, _ = self.eval_cameras(frames)
        s = self.config.eval_size
        return c2w[:, :3], K[0], s, s

    def camera_info(self) -> dict:
        return {}

    # ------------------------------------------------------------------ outputs
    def extra_metrics(self) -> dict:
        return {
            "prompt": self.config.prompt,
            "prior": self.config.prior or type(self.prior).__name__,
            "distill_method": self.config.method,
            "representation": self.config.representation,
            "guidance_scale": self.guidance_scale,
            "n_particles": self.config.n_particles,
            "train_cpu_seconds": round(self.cpu_seconds, 2),
            "seconds_per_step": round(self.train_seconds / max(self.step, 1), 4),
            "threads": torch.get_num_threads(),
        }

    def export(self, out_dir: str | os.PathLike) -> list[Path]:
        """``mesh.glb`` (NeRF: marching tetrahedra of the density, vertex colours) or
        ``gaussians.ply`` (GS: the standard 3DGS layout) of every particle (``_<i>`` suffixes
        beyond the first)."""
        out = Path(out_dir)
        paths = []
        for i in range(len(self.particles)):
            sfx = "" if i == 0 else f"_{i}"
            if self.config.representation == "gs":
                from raysplat.gs.ply import save_ply

                paths.append(save_ply(self.particles[i].model, out / f"gaussians{sfx}.ply"))
            else:
                paths.append(self.export_mesh(out / f"mesh{sfx}.glb", i))
        return paths

    @torch.no_grad()
    def export_mesh(self, path: str | os.PathLike, particle: int = 0) -> Path:
        """Writes particle ``particle``'s NeRF surface (density ``mesh_threshold``) as a GLB."""
        import trimesh

        from raysplat.text3d.export import marching_tetrahedra

        cfg = self.config
        field = self.particles[particle].field
        field.eval()
        n, r = cfg.mesh_resolution, cfg.radius
        g = torch.linspace(-r, r, n)
        pts = torch.stack(torch.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
        dens = torch.cat([field.density(c.to(self.device)).cpu() for c in pts.split(1 << 16)]).reshape(
            n, n, n
        )
        verts, faces = marching_tetrahedra(dens.numpy(), cfg.mesh_threshold, (-r,) * 3, (r,) * 3)
        if len(faces) == 0:  # nothing above the threshold: an empty but valid file
            verts, faces = np.zeros((3, 3)), np.zeros((0, 3), np.int64)
        mesh = trimesh.Trimesh(verts, faces, process=False)
        colors = np.full((len(verts), 4), 255, np.uint8)
        if len(faces):
            v = torch.from_numpy(np.asarray(verts, np.float32)).to(self.device)
            nrm = torch.from_numpy(np.asarray(mesh.vertex_normals, np.float32)).to(self.device)
            rgb = torch.cat(
                [field(a, -b)[1] for a, b in zip(v.split(1 << 16), nrm.split(1 << 16), strict=True)]
            )
            colors[:, :3] = (rgb.clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)
        mesh.visual.vertex_colors = colors
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        mesh.export(str(p), file_type="glb")
        return p

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        return {
            "particles": self.particles.state_dict(),
            "background": self.background.state_dict(),
            "optimizers": [o.state_dict() for o in self.optimizers],
            "bg_optimizer": self.bg_optimizer.state_dict(),
            "phi": None if self.phi is None else {k: v for k, v in self.phi.state_dict().items()},
            "phi_optimizer": None if self.phi_optimizer is None else self.phi_optimizer.state_dict(),
            "rng": self.gen.get_state(),
            "device_rng": self.device_gen.get_state(),
            "density": [None if p.density is None else p.density.state_dict() for p in self.particles]
            if self.config.representation == "gs"
            else None,
            "densify_rng": self.densify_gen.get_state() if hasattr(self, "densify_gen") else None,
            "torch_rng": torch.get_rng_state(),
            "grad_scaler": self.scaling.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.scaling.load_state_dict(state.get("grad_scaler"))
        if self.config.representation == "gs":  # densified particles: match the saved counts first
            for i, p in enumerate(self.particles):
                pre = f"{i}.model.params."
                p.resize_like({k: v for k, v in state["particles"].items() if k.startswith(pre)})
            self._make_optimizers()
        self.particles.load_state_dict(state["particles"])
        self.background.load_state_dict(state["background"])
        for o, s in zip(self.optimizers, state["optimizers"], strict=True):
            o.load_state_dict(s)
        self.bg_optimizer.load_state_dict(state["bg_optimizer"])
        if state.get("phi") is not None:
            if self.phi is not None:
                self.phi.load_state_dict(state["phi"])
                self.phi_optimizer.load_state_dict(state["phi_optimizer"])
            else:  # the prior is not loaded yet: ε_φ is built (and restored) with it
                self._pending_phi = (state["phi"], state["phi_optimizer"])
        self.gen.set_state(state["rng"])
        self.device_gen.set_state(state["device_rng"])
        for p, d in zip(self.particles, state.get("density") or [], strict=False):
            if d is not None and p.density is not None:
                p.density.load_state_dict(d)
        if state.get("densify_rng") is not None and hasattr(self, "densify_gen"):
            self.densify_gen.set_state(state["densify_rng"])
        torch.set_rng_state(state["torch_rng"])

    @classmethod
    def _restore(cls, checkpoint: dict, scene, config: Text3DConfig) -> Trainer:
        """``scene`` is the prior here (a DiffusionPrior or a spec); default: ``config.prior``
        when it is a spec, else none (render only)."""
        if scene is not None:
            return cls(scene, None, config)
        return cls(config.prior, None, config, lazy_prior=True)


def psnr_against_prior(trainer: Trainer) -> float | None:
    """Mean PSNR of the held-out views (camera-aware priors), as :meth:`Trainer.evaluate`."""
    views = trainer.test_views()
    if not views:
        return None
    c2w = torch.stack([v.c2w for v in views])
    K = torch.stack([v.K for v in views])
    s = trainer.config.eval_size
    imgs = trainer.render(c2w, K, s, s)
    return sum(psnr(i, v.image) for i, v in zip(imgs, views, strict=True)) / len(views)
