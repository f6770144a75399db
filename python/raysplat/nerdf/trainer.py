"""NeRDF distillation: a :class:`Trainer` that fits a :class:`~raysplat.nerdf.model.NerdfNetwork`
to a trained raysplat NeRF (the teacher), on the shared lifecycle of :mod:`raysplat.training`.

Every step draws a random camera (online view sampling, algorithms.md section 3.4): on the
training cameras' shell around the point they look at for object-centric scenes; for
forward-facing ones the centre uniform in the bounding box of the training camera centres and
the viewing direction uniform in the box of their forward vectors (the released code's "scheme
2"). ``batch_rays`` random pixels of that view are rendered by the frozen teacher and by the
student, and the loss is

    L = MSE(C_student, C_teacher) + lambda_sigma * MSE(n(sigma_student), n(sigma_teacher)),

``n`` the L2 normalisation along each ray, ``sigma_student`` the Fourier density the student
renders with (raw, before the activation) at its own sample positions and ``sigma_teacher`` the
teacher's density queried at those positions — the paper's constraint (the released code
applies it to a Gaussian-mixture decoding rendering never uses, section 3.6). No ground-truth
image is used; the scene's test images only score the result.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from raysplat.cameras import look_at
from raysplat.datasets import Scene
from raysplat.distribution import SIGMA_ACTIVATIONS, render_distribution
from raysplat.metrics import psnr
from raysplat.nerdf.model import N_POINTS, NerdfHashNetwork, NerdfNetwork, input_dim, ray_input, ray_points
from raysplat.nerf.trainer import NDC_AABB, SceneInfo
from raysplat.rays import generate_rays, ndc_rays
from raysplat.training.config import TrainingConfig, check_device, option
from raysplat.training.data import load_scene
from raysplat.training.precision import GradScaling, set_network_precision
from raysplat.training.trainer import TestView, load_checkpoint, scene_test_views
from raysplat.training.trainer import Trainer as BaseTrainer


@dataclass
class NerdfConfig(TrainingConfig):
    """NeRDF distillation settings (defaults sized for CPU; the paper's: width 384, depth 8,
    600k steps of 2048 rays)."""

    DEFAULT_STEPS: ClassVar[int] = 3000
    PRECISIONS: ClassVar[tuple[str, ...]] = ("fp32", "bf16", "fp16")

    teacher: str | None = option(None, "path of the teacher NeRF checkpoint (raysplat train nerf)")
    width: int = option(128, "MLP width (see benches/nerdf.py for the width sweep)")
    encoding: str = option(
        "hashgrid",
        "network input: 'hashgrid' (the ray's points in a hash grid, the default: trains faster on"
        " CPU, see model.py) or 'pe' (the paper's positional encoding)",
    )
    depth: int | None = option(
        None, "MLP layers (None: 8 for 'pe', every 4th taking the input again; 3 for 'hashgrid')"
    )
    hash_levels: int = option(12, "hash-grid levels ('hashgrid' input)")
    hash_log2_table: int = option(17, "log2 of the hash-table rows per level ('hashgrid' input)")
    hash_max_res: int = option(512, "finest hash-grid resolution ('hashgrid' input)")
    n_samples: int = option(64, "distribution samples per ray in training")
    n_samples_test: int = option(64, "distribution samples per ray when rendering")
    batch_rays: int = option(1024, "rays per step (all from one random view)")
    lr: float = option(1e-3, "Adam learning rate (decays x0.1 over the run)")
    lambda_sigma: float = option(0.1, "weight of the normalised density constraint (0: off)")
    sigma_activation: str = option("relu", "density activation: 'relu' (the paper's) or 'softplus'")
    sigma_noise_std: float = option(0.0, "std of noise on the raw density in training")
    chunk: int = option(8192, "rays per chunk when rendering full images")
    eval_views: int | None = option(None, "test views evaluated (None: all)")

    def validate(self) -> None:
        super().validate()
        if self.encoding not in ("pe", "hashgrid"):
            raise ValueError(f"encoding must be 'pe' or 'hashgrid', got {self.encoding!r}")
        names = ["width", "n_samples", "n_samples_test", "batch_rays", "chunk"]
        names += ["hash_levels", "hash_log2_table", "hash_max_res"]
        if self.depth is not None:
            names.append("depth")
        for name in names:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.sigma_activation not in SIGMA_ACTIVATIONS:
            raise ValueError(
                f"sigma_activation must be one of {SIGMA_ACTIVATIONS}, got {self.sigma_activation!r}"
            )
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not self.lambda_sigma >= 0:
            raise ValueError(f"lambda_sigma must be >= 0, got {self.lambda_sigma}")
        if not self.sigma_noise_std >= 0:
            raise ValueError(f"sigma_noise_std must be >= 0, got {self.sigma_noise_std}")
        if self.eval_views is not None and self.eval_views < 1:
            raise ValueError(f"eval_views must be >= 1 or None, got {self.eval_views}")


def normalized_sigma_loss(sigma_student: torch.Tensor, sigma_teacher: torch.Tensor) -> torch.Tensor:
    """``MSE(n(s), n(t))`` with ``n`` the L2 normalisation along each ray (dim 1): unchanged when
    either density is scaled by a positive constant."""
    return F.mse_loss(
        F.normalize(sigma_student, dim=1, eps=1e-8), F.normalize(sigma_teacher, dim=1, eps=1e-8)
    )


def student_box(info: SceneInfo) -> tuple[list[float], str | None]:
    """``(aabb, contraction)`` of the hash-grid student: the box the teacher's field uses (the
    NDC box for forward-facing scenes, the content box for object scenes, the content box with
    L-inf contraction for unbounded captures)."""
    if info.forward_facing:
        return list(NDC_AABB), None
    if info.format == "blender":
        return info.aabb.tolist(), None
    return info.aabb.tolist(), "linf"


def random_pose(info: SceneInfo, generator: torch.Generator) -> torch.Tensor:
    """One random OpenGL ``c2w`` ``[3, 4]`` around the training cameras of ``info`` (see the
    module docstring)."""
    c2w = info.c2w[info.split["train"]] if len(info.split.get("train", [])) else info.c2w
    c2w = c2w.double()
    centres, fwd, ups = c2w[:, :3, 3], -c2w[:, :3, 2], c2w[:, :3, 1]
    up = F.normalize(ups.mean(0), dim=0)

    def box(v):
        lo, hi = v.min(0).values, v.max(0).values
        return lo + (hi - lo) * torch.rand(3, generator=generator, dtype=torch.float64)

    if info.forward_facing:
        eye = box(centres)
        d = F.normalize(box(fwd), dim=0)
        return look_at(eye, eye + d, up).float()
    # the point the cameras look at (least squares), then a point on their shell
    proj = torch.eye(3, dtype=torch.float64) - fwd[:, :, None] * fwd[:, None, :]
    focus = torch.linalg.lstsq(proj.sum(0), (proj @ centres[:, :, None]).sum(0)).solution[:, 0]
    rel = centres - focus
    radii = rel.norm(dim=-1)
    heights = (F.normalize(rel, dim=-1) @ up).clamp(-1, 1)
    u = torch.rand(3, generator=generator, dtype=torch.float64)
    radius = radii.min() + (radii.max() - radii.min()) * u[0]
    h = heights.min() + (heights.max() - heights.min()) * u[1]
    a = F.normalize(torch.linalg.cross(up, rel[0]), dim=0)
    b = torch.linalg.cross(up, a)
    phi = 2 * math.pi * u[2]
    horiz = torch.cos(phi) * a + torch.sin(phi) * b
    eye = focus + radius * (torch.sqrt(1 - h * h) * horiz + h * up)
    return look_at(eye, focus, up).float()


class Trainer(BaseTrainer):
    """Distils a NeRDF from the NeRF checkpoint ``config.teacher`` (``scene``: the dataset,
    used only for the test views and their ground truth; optional)."""

    method = "nerdf"
    config_class = NerdfConfig

    def __init__(
        self, scene: Scene | str | os.PathLike | None, config: NerdfConfig | None = None, *, info=None
    ):
        super().__init__(config or NerdfConfig())
        cfg = self.config
        self.device = check_device(cfg.device)
        if isinstance(scene, (str, os.PathLike)):
            scene = load_scene(scene)
        self.scene = scene
        self._teacher = None
        if info is None:
            info = SceneInfo(
                **{k: v for k, v in self.teacher.camera_info().items() if k in SceneInfo.__dataclass_fields__}
            )
        self.info: SceneInfo = info
        if info.forward_facing:
            self.near, self.far = 0.0, 1.0
        else:
            self.near, self.far = float(info.near), float(info.far)
        torch.manual_seed(cfg.seed)
        self.gen = torch.Generator(self.device).manual_seed(cfg.seed)
        self.pose_gen = torch.Generator().manual_seed(cfg.seed + 1)
        init_gen = torch.Generator().manual_seed(cfg.seed)
        if cfg.encoding == "pe":
            self.net = NerdfNetwork(input_dim(N_POINTS), cfg.width, cfg.depth or 8, generator=init_gen)
        else:
            aabb, contraction = student_box(info)
            self.net = NerdfHashNetwork(
                aabb,
                contraction,
                N_POINTS,
                cfg.width,
                cfg.depth or 3,
                n_levels=cfg.hash_levels,
                log2_table=cfg.hash_log2_table,
                max_res=cfg.hash_max_res,
                generator=init_gen,
            )
        self.net.to(self.device)
        self.scaling = GradScaling(cfg.precision, self.device)  # fp16 loss scaling
        set_network_precision(self.net, cfg.precision)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)
        self.timing = {"network_s": 0.0, "integration_s": 0.0, "rays": 0}

    @property
    def teacher(self):
        """The frozen teacher NeRF trainer (loaded on first use; only training needs it)."""
        if self._teacher is None:
            if not self.config.teacher:
                raise ValueError("teacher: a NeRF checkpoint is needed to distil (config.teacher)")
            t = load_checkpoint(self.config.teacher, device=self.config.device)
            if t.method != "nerf":
                raise ValueError(f"teacher: {self.config.teacher} is a {t.method} checkpoint, not nerf")
            t.field.requires_grad_(False)
            t.sampler.requires_grad_(False)
            self._teacher = t
        return self._teacher

    # ------------------------------------------------------------------ rays and rendering
    def make_rays(self, c2w, K, pixels=None, width=None, height=None):
        """``(origins, directions, viewdirs)`` [R, 3] (NDC origins/directions for forward-facing
        scenes, as the teacher's)."""
        inf = self.info
        w, h = width or inf.width, height or inf.height
        o, d = generate_rays(c2w.to(self.device), K.to(self.device), w, h, pixels=pixels)
        o, d = o.reshape(-1, 3), d.reshape(-1, 3)
        if inf.forward_facing:
            k0 = inf.K.reshape(-1, 3, 3)[0].to(self.device)
            on, dn = ndc_rays(o, d, k0, inf.width, inf.height, near=inf.ndc_near)
            return on, dn, d
        return o, d, d

    def background(self) -> torch.Tensor | None:
        """The teacher's evaluation background (white for object scenes, none for captures)."""
        if self.info.format == "blender" or self.info.rgba:
            return torch.ones(3, device=self.device)
        return None

    def render_rays(self, origins, directions, viewdirs, train: bool = False, return_samples: bool = False):
        """The student's :class:`~raysplat.distribution.RenderedDistribution` of the rays."""
        cfg = self.config
        t0 = time.perf_counter()
        gen = self.gen if train else None
        if cfg.encoding == "pe":
            x = ray_input(origins, directions, viewdirs, self.near, self.far, N_POINTS, train, gen)
            coeffs = self.net(x)
        else:
            pts = ray_points(origins, directions, self.near, self.far, N_POINTS, train, gen)
            coeffs = self.net(pts, viewdirs)
        t1 = time.perf_counter()
        out = render_distribution(
            coeffs,
            cfg.n_samples if train else cfg.n_samples_test,
            self.near,
            self.far,
            stratified=train,
            generator=self.gen if train else None,
            sigma_activation=cfg.sigma_activation,
            sigma_noise_std=cfg.sigma_noise_std if train else 0.0,
            render_bkgd=self.background(),
            return_samples=return_samples,
        )
        if not train:
            self.timing["network_s"] += t1 - t0
            self.timing["integration_s"] += time.perf_counter() - t1
            self.timing["rays"] += origins.shape[0]
        return out

    @torch.no_grad()
    def render(self, c2w: torch.Tensor, K: torch.Tensor, width: int, height: int) -> torch.Tensor:
        """Renders OpenGL poses ``c2w`` ``[B, 3|4, 4]`` to ``[B, H, W, 3]``."""
        self.net.eval()
        c2w = c2w.reshape(-1, *c2w.shape[-2:])
        K = K.reshape(-1, 3, 3).expand(c2w.shape[0], 3, 3)
        imgs = []
        for c, k in zip(c2w, K, strict=True):
            o, d, v = self.make_rays(
                c[:3, :4].reshape(1, 3, 4), k.reshape(1, 3, 3), width=width, height=height
            )
            rgb = torch.cat(
                [
                    self.render_rays(
                        o[s : s + self.config.chunk],
                        d[s : s + self.config.chunk],
                        v[s : s + self.config.chunk],
                    ).colors
                    for s in range(0, o.shape[0], self.config.chunk)
                ]
            )
            imgs.append(rgb.reshape(height, width, 3).cpu())
        return torch.stack(imgs)

    # ------------------------------------------------------------------ training
    def _teacher_rays(self, c2w, K, pixels):
        from raysplat.nerf.samplers import Rays

        o, d, v = self.make_rays(c2w, K, pixels)
        return Rays(o, d, v, self.teacher.near, self.teacher.far)

    def _train_step(self) -> dict:
        cfg = self.config
        self.net.train()
        frac = self.step / max(cfg.schedule_steps(), 1)
        for group in self.optimizer.param_groups:
            group["lr"] = cfg.lr * 0.1 ** min(frac, 1.0)
        inf = self.info
        c2w = random_pose(inf, self.pose_gen)[None]
        K = inf.K.reshape(-1, 3, 3)[:1]
        pix = torch.randint(
            0, inf.width * inf.height, (cfg.batch_rays,), generator=self.gen, device=self.device
        )
        rays = self._teacher_rays(c2w, K, pix)
        teacher = self.teacher
        with torch.no_grad():
            target = teacher.sampler.render(teacher.field, rays, self.background(), train=False).rgb
        want = cfg.lambda_sigma > 0
        out = self.render_rays(rays.origins, rays.directions, rays.viewdirs, train=True, return_samples=want)
        mse = F.mse_loss(out.colors, target)
        loss = mse
        if want:
            with torch.no_grad():
                pts = rays.origins[:, None] + out.t[..., None] * rays.directions[:, None]
                sig_t = teacher.field.density(pts.reshape(-1, 3)).reshape(out.t.shape)
            loss = loss + cfg.lambda_sigma * normalized_sigma_loss(out.sigmas, sig_t)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaling.backward(loss)
        self.scaling.step(self.optimizer)
        self.scaling.update()
        return {
            "loss": float(loss.detach()),
            "psnr_teacher": -10 * math.log10(max(float(mse.detach()), 1e-10)),
        }

    # ------------------------------------------------------------------ evaluation
    def test_views(self) -> list[TestView]:
        """The test views (the first ``eval_views``) on the evaluation background."""
        if self.scene is None:
            return []
        return scene_test_views(
            self.scene, self.info.c2w, self.info.K, self.config.eval_views, self.background()
        )

    @torch.no_grad()
    def psnr_vs_teacher(self) -> float | None:
        """Mean PSNR of the student's test renders against the teacher's (None without a
        teacher or test views)."""
        views = self.test_views()
        if not views or not self.config.teacher:
            return None
        vals = []
        for v in views:
            h, w = v.image.shape[:2]
            a = self.render(v.c2w[None], v.K, w, h)[0].clamp(0, 1)
            b = self.teacher.render(v.c2w[None], v.K, w, h)[0].clamp(0, 1).cpu()
            vals.append(psnr(a, b))
        return sum(vals) / len(vals)

    @torch.no_grad()
    def evaluate(self, return_images: bool = False) -> dict:
        """The shared evaluation plus ``psnr_vs_teacher`` and the render-time split."""
        self.timing = {"network_s": 0.0, "integration_s": 0.0, "rays": 0}
        ev = super().evaluate(return_images)
        tm = self.timing
        total = tm["network_s"] + tm["integration_s"]
        ev["network_fraction"] = tm["network_s"] / total if total > 0 else None
        ev["psnr_vs_teacher"] = self.psnr_vs_teacher() if ev["psnr"] is not None else None
        self._last_eval = ev
        return ev

    def camera_info(self) -> dict:
        return asdict(self.info)

    def extra_metrics(self) -> dict:
        ev = getattr(self, "_last_eval", {})
        return {
            "psnr_vs_teacher": ev.get("psnr_vs_teacher"),
            "render_network_fraction": ev.get("network_fraction"),
            "teacher": self.config.teacher,
            "parameters": sum(p.numel() for p in self.net.parameters()),
            "threads": torch.get_num_threads(),
        }

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        return {
            "net": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": self.gen.get_state(),
            "pose_rng": self.pose_gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "grad_scaler": self.scaling.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.scaling.load_state_dict(state.get("grad_scaler"))
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.gen.set_state(state["rng"])
        self.pose_gen.set_state(state["pose_rng"])
        torch.set_rng_state(state["torch_rng"])

    @classmethod
    def _restore(cls, checkpoint: dict, scene, config: NerdfConfig) -> Trainer:
        info = SceneInfo(
            **{k: v for k, v in checkpoint["cameras"].items() if k in SceneInfo.__dataclass_fields__}
        )
        return cls(scene, config, info=info)
