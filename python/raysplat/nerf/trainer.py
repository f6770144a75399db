"""NeRF training: :class:`Trainer` fits a hash-grid radiance field to a :class:`~raysplat.datasets.Scene`
with one of four samplers (the shared lifecycle of :mod:`raysplat.training`: train, evaluate,
render any camera, checkpoints that resume exactly, the common output layout)."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F

from raysplat.datasets import Scene
from raysplat.metrics import psnr
from raysplat.nerf.field import RadianceField
from raysplat.nerf.pronerf import ProNerfSampler
from raysplat.nerf.samplers import SAMPLERS, HierarchicalSampler, OccGridSampler, ProposalSampler, Rays
from raysplat.projection import nearest_views
from raysplat.rays import generate_rays, ndc_rays
from raysplat.training import distributed
from raysplat.training.config import TrainingConfig, check_device, option
from raysplat.training.data import load_scene
from raysplat.training.precision import GradScaling, set_network_precision
from raysplat.training.trainer import TestView, scene_test_views
from raysplat.training.trainer import Trainer as BaseTrainer

#: the box forward-facing (NDC) scenes are modelled in
NDC_AABB = (-1.5, -1.5, -1.0, 1.5, 1.5, 1.0)


def _positive_ints(name: str, value) -> tuple[int, ...]:
    """``value`` (one int or a sequence of them, e.g. from ``--set prop_samples=[64,32]``) as a
    tuple of positive ints, or a ``ValueError`` naming ``name``."""
    items = (value,) if isinstance(value, (int, str)) else value
    try:
        out = tuple(int(v) for v in items)
    except (TypeError, ValueError):
        out = ()
    if not out or any(v < 1 for v in out) or any(isinstance(v, bool) for v in items):
        raise ValueError(f"{name} must be a positive integer or a list of them, got {value!r}")
    return out


@dataclass
class NerfConfig(TrainingConfig):
    """NeRF training settings (defaults: CPU-sized Instant-NGP-style training)."""

    DEFAULT_STEPS: ClassVar[int] = 2000
    PRECISIONS: ClassVar[tuple[str, ...]] = ("fp32", "bf16", "fp16")

    sampler: str = option("occgrid", "sample placement: 'occgrid', 'proposal', 'hierarchical' or 'pronerf'")
    batch_rays: int = option(
        1024,
        "rays per step, all ranks together under torch.distributed (occgrid adapts it to evaluate "
        "about `target_samples` a step)",
    )
    stratified: bool = option(
        True,
        "jitter the sample positions while training (under torch.distributed each rank jitters its "
        "share of the rays from its own stream; False makes a multi-process step equal a "
        "single-process one on the same rays)",
    )
    target_samples: int = option(1 << 15, "samples per step the occgrid batch size aims at")
    max_batch_rays: int = option(4096, "upper bound of the adaptive batch size")
    lr: float = option(1e-2, "Adam learning rate")
    warmup_steps: int = option(100, "linear learning-rate warm-up steps")
    weight_decay: float = option(1e-6, "weight decay of the MLP weights")
    n_levels: int = option(16, "hash-grid levels")
    log2_table: int = option(15, "log2 of the hash-table size per level")
    max_res: int = option(1024, "finest hash-grid resolution")
    hidden: int = option(64, "MLP width")
    grid_resolution: int = option(64, "occupancy-grid resolution (occgrid)")
    render_step_size: float | None = option(None, "marching step (occgrid; None: the grid's diagonal / 1000)")
    prop_samples: tuple[int, ...] = option((64,), "samples of each proposal level (proposal)")
    num_samples: int = option(32, "samples of the radiance field (proposal)")
    n_coarse: int = option(32, "coarse samples (hierarchical)")
    n_fine: int = option(48, "fine samples (hierarchical)")
    pronerf_samples: int = option(12, "field samples a ray (pronerf; the paper's 8 or 12)")
    pronerf_views: int = option(4, "reference views a ray is projected into (pronerf)")
    pronerf_width: int = option(
        64, "width of each PAS network (pronerf; paper: 256, see raysplat.nerf.pronerf)"
    )
    pronerf_layers: int = option(
        3, "hidden layers of each PAS network (pronerf; 3 + the head = 4 layers; paper: 6)"
    )
    pronerf_lr: float = option(
        5e-3,
        "Adam learning rate of the PAS networks (pronerf; the paper's 5e-4 for everything over 500k "
        "steps; 5e-3 measured better than 1e-3 at CPU budgets, see the README)",
    )
    pronerf_explore_samples: int = option(
        24,
        "the most field samples a ray gets in an exploration step (pronerf): every sample is "
        "replicated n ~ U{1..this // pronerf_samples} times; the paper's 64 makes an exploration "
        "step cost ~2x an exploitation step, 24 measured better at CPU budgets (README)",
    )
    pronerf_refine: float = option(
        0.0,
        "share of the training budget (steps or seconds) spent in ProNeRF's refinement stage at the "
        "end: one fresh optimiser over the field and both PAS networks, the rendered colour's loss "
        "only, jittered refined samples (pronerf; the released code's stage 2, as long as stage 1 "
        "there; 0: none)",
    )
    pronerf_refine_lr: float = option(
        0.6,
        "learning rates of the refinement stage as a multiple of stage 1's (pronerf; released code: "
        "3e-4 / 5e-4); its schedule restarts over the stage",
    )
    pronerf_box: bool = option(
        True,
        "object (Blender) scenes: each ray's depth range is its part inside the scene's box instead "
        "of the whole [near, far] (pronerf; not in the released code)",
    )
    pronerf_interlevel: float | None = option(
        None,
        "weight of the interlevel loss that pulls stage A's depths to the quantiles of the field's "
        "compositing weights in exploration steps (pronerf; 0: off, the released code; None: 1 on "
        "object scenes without pronerf_occupancy, else 0: it measured worse on forward-facing scenes "
        "and with the occupancy grid, see the README)",
    )
    pronerf_occupancy: bool | None = option(
        None,
        "object scenes: an occupancy grid (grid_resolution) shrinks each ray's range to its occupied "
        "part, skips rays that cross no occupied cell, and exploration trains the field on the grid's "
        "marched samples (pronerf; None: on for object scenes with pronerf_box; not in the released code)",
    )
    pronerf_explore_grid: bool = option(
        True,
        "with pronerf_occupancy: exploration trains the field on the grid's marched samples (else "
        "on the densified PAS samples, as the released code does) (pronerf)",
    )
    pronerf_interlevel_uniform: float = option(
        0.25, "uniform share of the interlevel loss's target distribution (pronerf)"
    )
    chunk: int = option(4096, "rays per chunk when rendering full images")
    eval_views: int | None = option(None, "test views evaluated (None: all)")
    clock: str = option(
        "wall",
        "what `seconds` measures: 'wall' time, or 'cpu': this process's CPU time over the torch thread "
        "count (an estimate of wall time on an otherwise idle machine)",
    )

    def validate(self) -> None:
        super().validate()
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        self.prop_samples = _positive_ints("prop_samples", self.prop_samples)
        if not 2 <= self.pronerf_samples <= 32:
            raise ValueError(
                f"pronerf_samples must be in [2, 32] (the paper uses 8 or 12), got {self.pronerf_samples}"
            )
        if self.pronerf_views < 1 or self.pronerf_width < 1 or self.pronerf_layers < 1:
            raise ValueError("pronerf_views, pronerf_width and pronerf_layers must be >= 1")
        if self.pronerf_explore_samples < self.pronerf_samples:
            raise ValueError(
                f"pronerf_explore_samples must be >= pronerf_samples ({self.pronerf_samples}), "
                f"got {self.pronerf_explore_samples}"
            )
        if not 0.0 <= self.pronerf_refine < 1.0:
            raise ValueError(f"pronerf_refine must be in [0, 1), got {self.pronerf_refine}")
        if not self.pronerf_refine_lr > 0.0:
            raise ValueError(f"pronerf_refine_lr must be > 0, got {self.pronerf_refine_lr}")
        if self.pronerf_interlevel is not None and self.pronerf_interlevel < 0.0:
            raise ValueError(f"pronerf_interlevel must be >= 0, got {self.pronerf_interlevel}")
        if self.pronerf_occupancy and not self.pronerf_box:
            raise ValueError("pronerf_occupancy needs pronerf_box (the grid covers the scene's box)")
        if not 0.0 <= self.pronerf_interlevel_uniform <= 1.0:
            raise ValueError(
                f"pronerf_interlevel_uniform must be in [0, 1], got {self.pronerf_interlevel_uniform}"
            )
        if self.clock not in ("wall", "cpu"):
            raise ValueError(f"clock must be 'wall' or 'cpu', got {self.clock!r}")
        if self.eval_views is not None and self.eval_views < 1:
            raise ValueError(f"eval_views must be >= 1 or None, got {self.eval_views}")


@dataclass
class SceneInfo:
    """What a checkpoint keeps of the scene (enough to render without the dataset)."""

    c2w: torch.Tensor
    K: torch.Tensor
    width: int
    height: int
    split: dict
    near: float
    far: float
    aabb: torch.Tensor
    format: str
    forward_facing: bool
    render_c2w: torch.Tensor | None = None
    ndc_near: float = 1.0
    rgba: bool = False
    path: str | None = None
    meta: dict = field(default_factory=dict)
    load_options: dict = field(default_factory=dict)

    @classmethod
    def of(cls, scene: Scene, path: str | None = None) -> SceneInfo:
        """The record of ``scene`` (``path``: where it was loaded from, for ``render``)."""
        if path is None and isinstance(scene.meta, dict):
            path = scene.meta.get("path")
        return cls(
            c2w=scene.c2w.float().clone(),
            K=scene.K.float().clone(),
            width=scene.width,
            height=scene.height,
            split={k: v.clone() for k, v in scene.split.items()},
            near=float(scene.near),
            far=float(scene.far),
            aabb=scene.aabb.float().clone(),
            format=scene.format,
            forward_facing=bool(scene.forward_facing),
            render_c2w=None if scene.render_c2w is None else scene.render_c2w.float().clone(),
            ndc_near=float(scene.meta.get("ndc_near", 1.0)) if isinstance(scene.meta, dict) else 1.0,
            rgba=scene.images.shape[-1] == 4,
            path=path,
            load_options=dict(scene.meta.get("load_options", {})) if isinstance(scene.meta, dict) else {},
        )


def _lr_factor(step: int, warmup: int, progress: float) -> float:
    """Linear warm-up from 1 % over ``warmup`` steps, then x0.33 at 50 / 75 / 90 % ``progress``
    (nerfacc's schedule)."""
    f = 0.01 + 0.99 * min(step / warmup, 1.0) if warmup > 0 else 1.0
    for m in (0.5, 0.75, 0.9):
        if progress >= m:
            f *= 0.33
    return f


class Trainer(BaseTrainer):
    """Trains a NeRF on ``scene`` (a :class:`~raysplat.datasets.Scene` or a dataset path).

    Example::

        trainer = raysplat.nerf.Trainer("data/lego", raysplat.nerf.NerfConfig(steps=2000))
        trainer.train()
        print(trainer.evaluate()["psnr"])
        trainer.save_checkpoint("runs/nerf/checkpoint.pt")
    """

    method = "nerf"
    config_class = NerfConfig
    data_parallel = True

    def __init__(
        self, scene: Scene | str | os.PathLike | None, config: NerfConfig | None = None, *, info=None
    ):
        super().__init__(config or NerfConfig())
        cfg = self.config
        self.device = check_device(distributed.local_device(cfg.device))
        distributed.check_batch("batch_rays", cfg.batch_rays)
        if isinstance(scene, (str, os.PathLike)):
            scene = load_scene(scene)
        if scene is None and info is None:
            raise ValueError("scene: a Scene or a dataset path is needed to train")
        self.scene = scene
        self.info: SceneInfo = info if info is not None else SceneInfo.of(scene)
        inf = self.info
        torch.manual_seed(cfg.seed)
        self.gen = torch.Generator(self.device).manual_seed(cfg.seed)
        init_gen = torch.Generator().manual_seed(cfg.seed)
        if inf.forward_facing:
            aabb, contraction, near, far, spacing = NDC_AABB, None, 0.0, 1.0, "linear"
        elif inf.format == "blender":
            aabb, contraction, near, far, spacing = inf.aabb.tolist(), None, inf.near, inf.far, "linear"
        else:  # unbounded real capture: contract space beyond the content box
            aabb, contraction = inf.aabb.tolist(), "linf"
            near, far, spacing = max(inf.near * 0.5, 1e-2), 1e3, "lindisp"
        self.near, self.far = near, far
        self.field = RadianceField(
            aabb,
            contraction,
            n_levels=cfg.n_levels,
            log2_table=cfg.log2_table,
            max_res=cfg.max_res,
            hidden=cfg.hidden,
            generator=init_gen,
        )
        if cfg.sampler == "occgrid":
            levels = 1 if contraction is None else 4
            self.sampler = OccGridSampler(
                aabb,
                resolution=cfg.grid_resolution,
                levels=levels,
                render_step_size=cfg.render_step_size,
                cone_angle=0.0 if contraction is None else 0.004,
                alpha_thre=0.0 if contraction is None else 1e-2,
            )
            self.far = 1e10 if contraction is not None else self.far
        elif cfg.sampler == "proposal":
            self.sampler = ProposalSampler(
                aabb,
                contraction,
                cfg.prop_samples,
                cfg.num_samples,
                "lindisp" if spacing == "lindisp" else "uniform",
                generator=init_gen,
            )
        elif cfg.sampler == "pronerf":
            if contraction is not None:
                raise ValueError(
                    "sampler 'pronerf' supports forward-facing (LLFF, NDC) and object (Blender) scenes, "
                    f"not unbounded {inf.format} captures"
                )
            ndc = None
            if inf.forward_facing:
                k0 = inf.K.reshape(-1, 3, 3)[0]
                ndc = (float(k0[0, 0]), float(k0[1, 1]), float(inf.width), float(inf.height), inf.ndc_near)
            occupancy = cfg.pronerf_occupancy
            if occupancy is None:  # on for object scenes with a box (measured: README)
                occupancy = cfg.pronerf_box and ndc is None
            interlevel = cfg.pronerf_interlevel
            if interlevel is None:  # object scenes without the grid only (measured: README)
                interlevel = 0.0 if inf.forward_facing or occupancy else 1.0
            self.sampler = ProNerfSampler(
                cfg.pronerf_samples,
                near,
                far,
                ndc,
                n_views=cfg.pronerf_views,
                width=cfg.pronerf_width,
                layers=cfg.pronerf_layers,
                channels=4 if inf.rgba else 3,
                explore_samples=cfg.pronerf_explore_samples,
                generator=init_gen,
                aabb=aabb if cfg.pronerf_box and ndc is None else None,
                interlevel=interlevel,
                interlevel_uniform=cfg.pronerf_interlevel_uniform,
                occupancy=cfg.grid_resolution if occupancy else 0,
                explore_grid=cfg.pronerf_explore_grid,
            )
            if scene is not None:
                idx = scene.indices("train")
                self.sampler.set_references(scene.images[idx], inf.c2w[idx], inf.K[idx])
        else:
            self.sampler = HierarchicalSampler(
                aabb,
                contraction,
                cfg.n_coarse,
                cfg.n_fine,
                "disparity" if spacing == "lindisp" else "linear",
                generator=init_gen,
            )
        self.field.to(self.device)
        self.sampler.to(self.device)
        #: fp16 loss scaling (a pass-through otherwise); the networks' autocast dtype is set below
        self.scaling = GradScaling(cfg.precision, self.device)
        set_network_precision(self.field, cfg.precision)
        set_network_precision(self.sampler, cfg.precision)
        grids = [p for n, p in self.named_parameters() if n.endswith("grid.table")]
        others = [p for n, p in self.named_parameters() if not n.endswith("grid.table")]
        groups = [{"params": grids}, {"params": others, "weight_decay": cfg.weight_decay}]
        self.s_optimizer = self.r_optimizer = None
        if isinstance(self.sampler, ProNerfSampler):  # exploration: field only; exploitation: all
            fgrids = [p for n, p in self.field.named_parameters() if n.endswith("grid.table")]
            fothers = [p for n, p in self.field.named_parameters() if not n.endswith("grid.table")]
            groups = [{"params": fgrids}, {"params": fothers, "weight_decay": cfg.weight_decay}]
            if self.sampler.interlevel > 0:  # exploration also trains stage A (the interlevel loss)
                groups.append({"params": list(self.sampler.stage_a.parameters()), "base_lr": cfg.pronerf_lr})

            def everything():
                return [
                    {"params": fgrids},
                    {"params": fothers, "weight_decay": cfg.weight_decay},
                    {"params": list(self.sampler.parameters()), "base_lr": cfg.pronerf_lr},
                ]

            self.s_optimizer = torch.optim.Adam(everything(), lr=cfg.lr, eps=1e-15)
            # the refinement stage's: fresh when it starts (Adam's moments are created lazily)
            self.r_optimizer = torch.optim.Adam(everything(), lr=cfg.lr, eps=1e-15)
        self.optimizer = torch.optim.Adam(groups, lr=cfg.lr, eps=1e-15)
        self.batch_rays = cfg.batch_rays
        distributed.broadcast_tensors(p for _, p in self.named_parameters())  # rank 0's init
        self.stats = {"rays": 0, "samples": 0, "render_rays": 0, "render_samples": 0}
        self._train_data = None

    def elapsed(self) -> float:
        """Training time so far on ``config.clock``."""
        if self.config.clock == "cpu":
            return self.cpu_seconds / max(torch.get_num_threads(), 1)
        return self.train_seconds

    def named_parameters(self):
        """The field's and the sampler's parameters, prefixed ``field.`` / ``sampler.``."""
        yield from (("field." + n, p) for n, p in self.field.named_parameters())
        yield from (("sampler." + n, p) for n, p in self.sampler.named_parameters())

    # ------------------------------------------------------------------ rays
    def make_rays(
        self,
        c2w: torch.Tensor,
        K: torch.Tensor,
        pixels: torch.Tensor | None = None,
        width: int | None = None,
        height: int | None = None,
    ) -> Rays:
        """Rays of cameras ``c2w`` [C, 3, 4] at flat ``pixels`` (all pixels when None) of
        ``width`` x ``height`` images (default: the dataset's). Forward-facing scenes map them to
        the training cameras' NDC space."""
        inf = self.info
        w, h = width or inf.width, height or inf.height
        o, d = generate_rays(c2w.to(self.device), K.to(self.device), w, h, pixels=pixels)
        o, d = o.reshape(-1, 3), d.reshape(-1, 3)
        if inf.forward_facing:
            k0 = inf.K.reshape(-1, 3, 3)[0].to(self.device)
            on, dn = ndc_rays(o, d, k0, inf.width, inf.height, near=inf.ndc_near)
            return Rays(on, dn, d, self.near, self.far)
        return Rays(o, d, d, self.near, self.far)

    def _training_set(self):
        if self._train_data is None:
            if self.scene is None:
                raise ValueError("this trainer has no scene data (load the checkpoint with a scene to train)")
            idx = self.scene.indices("train")
            imgs = self.scene.images[idx].to(self.device).float()
            self._train_data = (self.info.c2w[idx], self.info.K[idx], imgs.reshape(-1, imgs.shape[-1]))
        return self._train_data

    def eval_background(self) -> torch.Tensor | None:
        """White for object scenes (Blender), none (black) for captures."""
        if self.info.format == "blender" or self.info.rgba:
            return torch.ones(3, device=self.device)
        return None

    # ------------------------------------------------------------------ training
    def _train_step(self) -> dict:
        """One optimisation step on a random batch of rays from all training images.

        Under ``torch.distributed`` every rank draws the same global batch (ray indices and
        backgrounds from the shared generator), renders its :func:`~raysplat.training.distributed.shard`
        with its loss weighted by its share, and the gradients, losses and sample counts are summed
        over the ranks: the step of one process on the whole batch."""
        cfg, g = self.config, self.gen
        c2w, K, pix = self._training_set()
        self.field.train()
        progress = self.step / cfg.steps if cfg.steps else 0.0
        if cfg.seconds:
            progress = max(progress, self.elapsed() / cfg.seconds)
        pro = isinstance(self.sampler, ProNerfSampler)
        opt = self.optimizer
        if pro:
            opt, factor = self._pronerf_stage(progress)
        else:
            factor = _lr_factor(self.step, cfg.warmup_steps, progress)
        for group in opt.param_groups:
            group["lr"] = group.get("base_lr", cfg.lr) * factor
        self.sampler.update(self.step, self.field, generator=g)
        n_rays = self.batch_rays
        idx = torch.randint(0, pix.shape[0], (n_rays,), generator=g, device=self.device)
        target = pix[idx]
        view_ids = None
        if pro:  # random other training views to project into (ProNeRF training), drawn for the
            # whole batch so that every rank consumes the shared generator alike
            ref = self.sampler.ref_c2w
            cams = idx // (self.info.width * self.info.height)
            view_ids = nearest_views(
                ref[cams.to(ref.device)], ref, cfg.pronerf_views, exclude_self=True, random=True, generator=g
            )
        if target.shape[-1] == 4 and pro:  # the direct colours c_A, c_f need a fixed background
            bkgd = self.eval_background()
            target = target[:, :3] * target[:, 3:] + bkgd * (1.0 - target[:, 3:])
        elif target.shape[-1] == 4:  # background augmentation: a random colour per ray
            bkgd = torch.rand((n_rays, 3), generator=g, device=self.device)
            target = target[:, :3] * target[:, 3:] + bkgd * (1.0 - target[:, 3:])
        else:
            bkgd = self.eval_background()
        world = distributed.world_size()
        sg = g
        if world > 1:
            part = distributed.shard(n_rays)
            idx, target = idx[part], target[part]
            if view_ids is not None:
                view_ids = view_ids[part]
            if bkgd is not None and bkgd.dim() == 2:
                bkgd = bkgd[part]
            if cfg.stratified:  # this rank's jitter stream, derived from the shared generator
                seed = int(torch.randint(0, 1 << 62, (1,), generator=g, device=self.device))
                sg = torch.Generator(self.device).manual_seed(seed + 7919 * distributed.rank())
        rays = self.make_rays(c2w, K, idx)
        if view_ids is not None:
            rays.view_ids = view_ids
        out = self.sampler.render(
            self.field, rays, bkgd, train=True, generator=sg, step=self.step, stratified=cfg.stratified
        )
        mse = F.mse_loss(out.rgb, target)
        loss = mse
        for aux in out.aux_rgb:
            loss = loss + F.mse_loss(aux, target)
        if out.aux_loss is not None:
            loss = loss + out.aux_loss
        opt.zero_grad(set_to_none=True)
        n_samples = out.n_samples
        if world > 1:
            share = len(idx) / n_rays  # every term is a mean over the rays
            loss, mse = loss * share, mse * share
            self.scaling.backward(loss)  # the same loss scale on every rank (same reduced grads)
            params = [p for _, p in self.named_parameters()]
            stats = [float(loss.detach()), float(mse.detach()), float(n_samples)]
            loss, mse, n = distributed.all_reduce_grads(params, torch.tensor(stats, device=self.device))
            n_samples = int(round(float(n)))
            if any(p.grad is not None for p in params):
                self.scaling.step(opt)
        elif loss.requires_grad:
            self.scaling.backward(loss)
            self.scaling.step(opt)
        self.scaling.update()
        self.stats["rays"] += n_rays
        self.stats["samples"] += n_samples
        if isinstance(self.sampler, OccGridSampler):  # nerfacc's dynamic batch size
            spr = max(n_samples, 1) / n_rays
            self.batch_rays = int(min(max(cfg.target_samples / spr, 256), cfg.max_batch_rays))
            self.batch_rays = max(self.batch_rays, world)
        return {
            "loss": float(loss.detach()),
            "mse": float(mse.detach()),
            "psnr": -10 * math.log10(max(float(mse.detach()), 1e-10)),
        }

    def _pronerf_stage(self, progress: float) -> tuple[torch.optim.Optimizer, float]:
        """ProNeRF's optimiser and learning-rate factor for this step. Stage 1 (the first
        ``1 - pronerf_refine`` of the budget) alternates exploration (field optimiser) and
        exploitation (everything); the refinement stage, entered once ``progress`` reaches its
        share and kept from then on (the step is saved, so a resumed run stays in it), uses its own
        fresh optimiser at ``pronerf_refine_lr`` times the learning rates, on the house schedule
        (warm-up, then the decays) restarted over the stage."""
        cfg, s = self.config, self.sampler
        share = cfg.pronerf_refine
        if share > 0 and s.refine_from is None and progress >= 1.0 - share:
            s.refine_from = self.step
        if s.phase(self.step) == "refine":
            stage = (progress - (1.0 - share)) / share if share > 0 else 1.0
            return self.r_optimizer, cfg.pronerf_refine_lr * _lr_factor(
                self.step - s.refine_from, cfg.warmup_steps, stage
            )
        factor = _lr_factor(self.step, cfg.warmup_steps, progress / (1.0 - share))
        return (self.optimizer if s.explores(self.step) else self.s_optimizer), factor

    # ------------------------------------------------------------------ rendering
    @torch.no_grad()
    def render_rays(self, rays: Rays, bkgd=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        """Renders rays in chunks of ``config.chunk`` (bounded memory): rgb, opacity, depth, samples."""
        self.field.eval()
        outs, n_samples = [], 0
        for s in range(0, len(rays), self.config.chunk):
            sl = slice(s, s + self.config.chunk)
            vid = None if rays.view_ids is None else rays.view_ids[sl]
            sub = Rays(rays.origins[sl], rays.directions[sl], rays.viewdirs[sl], rays.near, rays.far, vid)
            b = bkgd if bkgd is None or bkgd.dim() == 1 else bkgd[sl]
            o = self.sampler.render(self.field, sub, b, train=False)
            outs.append((o.rgb, o.opacity, o.depth))
            n_samples += o.n_samples
        rgb, acc, depth = (torch.cat(x) for x in zip(*outs, strict=True))
        return rgb, acc, depth, n_samples

    @torch.no_grad()
    def render_image(
        self,
        c2w: torch.Tensor,
        K: torch.Tensor | None = None,
        width: int | None = None,
        height: int | None = None,
    ) -> dict:
        """Renders one camera [3|4, 4]: ``rgb`` [H, W, 3], ``opacity``/``depth`` [H, W] and
        ``samples_per_ray``."""
        inf = self.info
        K = inf.K[0] if K is None else K
        w, h = width or inf.width, height or inf.height
        rays = self.make_rays(c2w[..., :3, :4].reshape(1, 3, 4), K.reshape(1, 3, 3), width=w, height=h)
        if isinstance(self.sampler, ProNerfSampler):  # the nearest training views (ProNeRF testing)
            ref = self.sampler.ref_c2w
            ids = nearest_views(c2w[..., :3, :4].reshape(1, 3, 4).to(ref), ref, self.config.pronerf_views)
            rays.view_ids = ids.expand(len(rays), -1)
        rgb, acc, depth, n = self.render_rays(rays, self.eval_background())
        self.stats["render_rays"] += len(rays)
        self.stats["render_samples"] += n
        return {
            "rgb": rgb.reshape(h, w, 3).cpu(),
            "opacity": acc.reshape(h, w).cpu(),
            "depth": depth.reshape(h, w).cpu(),
            "samples_per_ray": n / max(len(rays), 1),
        }

    @torch.no_grad()
    def render(self, c2w: torch.Tensor, K: torch.Tensor, width: int, height: int) -> torch.Tensor:
        """Renders OpenGL poses ``c2w`` ``[B, 3|4, 4]`` with intrinsics ``K`` (``[3, 3]`` or
        ``[B, 3, 3]``) to ``[B, H, W, 3]`` (white background for object scenes)."""
        c2w = c2w.reshape(-1, *c2w.shape[-2:])
        K = K.reshape(-1, 3, 3).expand(c2w.shape[0], 3, 3)
        return torch.stack(
            [self.render_image(c, k, width, height)["rgb"] for c, k in zip(c2w, K, strict=True)]
        )

    def test_views(self) -> list[TestView]:
        """The test views (the first ``eval_views``) on the evaluation background."""
        if self.scene is None:
            return []
        return scene_test_views(
            self.scene, self.info.c2w, self.info.K, self.config.eval_views, self.eval_background()
        )

    @torch.no_grad()
    def evaluate(self, return_images: bool = False) -> dict:
        """The shared evaluation plus ``mean_color_psnr`` (the PSNR of each view's mean colour:
        the floor any model must beat) and ``eval_samples_per_ray``."""
        before = dict(self.stats)
        if isinstance(self.sampler, ProNerfSampler):
            self.sampler.reset_timing()
        ev = super().evaluate(return_images)
        if isinstance(self.sampler, ProNerfSampler) and self.sampler.timing["rays"]:
            ev["render_breakdown"] = self.render_breakdown()
        views = self.test_views()
        if views:
            ev["mean_color_psnr"] = sum(
                psnr(v.image.mean((0, 1), keepdim=True).expand_as(v.image), v.image) for v in views
            ) / len(views)
            rays = self.stats["render_rays"] - before["render_rays"]
            ev["eval_samples_per_ray"] = (self.stats["render_samples"] - before["render_samples"]) / max(
                rays, 1
            )
        self._last_eval = ev
        return ev

    def render_breakdown(self) -> dict:
        """Where ProNeRF's test-time rendering went since the sampler's last ``reset_timing``:
        milliseconds a frame (of the scene's size) in the field evaluations, the two PAS networks
        and the projections into the reference views, in the occupancy grid's ranges (object
        scenes), and the field evaluations a ray (fewer than N where rays cross no occupied cell)."""
        tm = self.sampler.timing
        frames = max(tm["rays"], 1) / (self.info.width * self.info.height)
        out = {
            "field_evals_per_ray": tm["samples"] / max(tm["rays"], 1),
            "field_ms_per_frame": 1000 * tm["field_s"] / frames,
            "sampler_nets_ms_per_frame": 1000 * tm["sampler_nets_s"] / frames,
            "projection_ms_per_frame": 1000 * tm["projection_s"] / frames,
        }
        if self.sampler.grid is not None:
            out["occupancy_ms_per_frame"] = 1000 * tm["occupancy_s"] / frames
        return out

    def camera_info(self) -> dict:
        return asdict(self.info)

    def extra_metrics(self) -> dict:
        ev = getattr(self, "_last_eval", {})
        return {
            "sampler": self.config.sampler,
            "scene": self.info.path or self.info.format,
            "train_cpu_seconds": round(self.cpu_seconds, 2),
            "mean_color_psnr": ev.get("mean_color_psnr"),
            "train_samples_per_ray": round(self.stats["samples"] / max(self.stats["rays"], 1), 2),
            "eval_samples_per_ray": ev.get("eval_samples_per_ray"),
            "train_rays_per_second": round(self.stats["rays"] / max(self.train_seconds, 1e-9), 1),
            "threads": torch.get_num_threads(),
            "render_breakdown": ev.get("render_breakdown"),
        }

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """Field, sampler (occupancy grid / proposal nets), optimiser, batch size, RNG states and
        the fp16 loss scaler's state."""
        return {
            "field": self.field.state_dict(),
            "sampler": self.sampler.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "s_optimizer": None if self.s_optimizer is None else self.s_optimizer.state_dict(),
            "r_optimizer": None if self.r_optimizer is None else self.r_optimizer.state_dict(),
            "refine_from": getattr(self.sampler, "refine_from", None),
            "batch_rays": self.batch_rays,
            "stats": dict(self.stats),
            "rng": self.gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "grad_scaler": self.scaling.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.scaling.load_state_dict(state.get("grad_scaler"))
        self.field.load_state_dict(state["field"])
        self.sampler.load_state_dict(state["sampler"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.s_optimizer is not None:
            self.s_optimizer.load_state_dict(state["s_optimizer"])
        if self.r_optimizer is not None and state.get("r_optimizer"):
            self.r_optimizer.load_state_dict(state["r_optimizer"])
        if isinstance(self.sampler, ProNerfSampler):
            self.sampler.refine_from = state.get("refine_from")
        self.batch_rays = int(state["batch_rays"])
        self.stats = {**self.stats, **state["stats"]}
        self.gen.set_state(state["rng"])
        torch.set_rng_state(state["torch_rng"])

    @classmethod
    def _restore(cls, checkpoint: dict, scene, config: NerfConfig) -> Trainer:
        info = SceneInfo(
            **{k: v for k, v in checkpoint["cameras"].items() if k in SceneInfo.__dataclass_fields__}
        )
        return cls(scene, config, info=info)
