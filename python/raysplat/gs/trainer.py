"""3DGS training: :class:`GSConfig` and :class:`Trainer` (optimisation, density control,
evaluation, checkpoints with exact resume; the shared lifecycle of :mod:`raysplat.training`)."""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from raysplat.cameras import c2w_to_viewmat, scene_extent
from raysplat.datasets.scene import Scene
from raysplat.gs.loss import photometric_loss
from raysplat.gs.model import PARAM_NAMES, GaussianModel
from raysplat.gs.ply import load_ply, save_ply
from raysplat.gs.strategy import DensifyConfig, DensityControl
from raysplat.metrics import psnr
from raysplat.training import distributed
from raysplat.training.config import TrainingConfig, check_device, option
from raysplat.training.data import camera_record, load_scene
from raysplat.training.trainer import TestView
from raysplat.training.trainer import Trainer as BaseTrainer

_BACKGROUNDS = {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0)}


@dataclass
class GSConfig(TrainingConfig):
    """3DGS training settings (defaults: 3DGS, scaled to ``steps`` where it has a schedule)."""

    DEFAULT_STEPS: ClassVar[int] = 7000
    PRECISION_NOTE: ClassVar[str] = (
        "3DGS has no network: projection, covariance inversion, SH evaluation and rasterisation "
        "need fp32"
    )

    sh_degree: int = option(3, "maximum SH degree, raised by one every `sh_every` steps")
    batch_cameras: int = option(
        1,
        "training views rendered per step, all ranks together under torch.distributed (the loss is "
        "their mean; learning rates and schedules are not rescaled)",
    )
    sh_every: int = option(1000, "steps between SH degree increases")
    init: str = option(
        "auto",
        "'auto' (the scene's points when it has them, else random), 'points', 'random' or a PLY path "
        "(a Gaussian PLY continues from it; a plain point cloud initialises from its points)",
    )
    init_random: int = option(100_000, "Gaussians of the random initialisation (uniform in the scene box)")
    init_opacity: float = option(0.1, "initial opacity")
    init_scale: float = option(1.0, "initial scale, times the mean distance to the 3 nearest neighbours")
    lr_means: float = option(
        1.6e-4, "learning rate of the means (times the scene extent), decayed exponentially"
    )
    lr_means_final: float = option(1.6e-6, "final learning rate of the means (times the scene extent)")
    lr_quats: float = option(1e-3, "learning rate of the rotations")
    lr_scales: float = option(5e-3, "learning rate of the log-scales")
    lr_opacities: float = option(5e-2, "learning rate of the opacity logits")
    lr_sh0: float = option(2.5e-3, "learning rate of the SH DC coefficients")
    lr_shN: float = option(2.5e-3 / 20, "learning rate of the higher SH coefficients")
    ssim_lambda: float = option(0.2, "weight of D-SSIM (zero-padded, as 3DGS) in the loss")
    background: str = option(
        "random", "training background for RGBA images: 'random' (per step), 'white' or 'black'"
    )
    eval_background: str = option("white", "evaluation background (and training background for RGB images)")
    eval_every: int = option(0, "evaluate on the test split every this many steps (0: only at the end)")
    rasterize_mode: str = option("classic", "'classic' or 'antialiased'")
    densify: DensifyConfig = option(factory=DensifyConfig, doc="adaptive density control")

    def validate(self) -> None:
        super().validate()
        if self.background not in ("random", *_BACKGROUNDS):
            raise ValueError(f"background must be 'random', 'white' or 'black', got {self.background!r}")
        if self.eval_background not in _BACKGROUNDS:
            raise ValueError(f"eval_background must be 'white' or 'black', got {self.eval_background!r}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if isinstance(self.batch_cameras, bool) or int(self.batch_cameras) != self.batch_cameras:
            raise ValueError(f"batch_cameras must be an integer, got {self.batch_cameras!r}")
        if self.batch_cameras < 1:
            raise ValueError(f"batch_cameras must be >= 1, got {self.batch_cameras}")
        self.batch_cameras = int(self.batch_cameras)
        if self.sh_degree not in (0, 1, 2, 3):
            raise ValueError(f"sh_degree must be 0, 1, 2 or 3, got {self.sh_degree}")
        if self.rasterize_mode not in ("classic", "antialiased"):
            raise ValueError(
                f"rasterize_mode must be 'classic' or 'antialiased', got {self.rasterize_mode!r}"
            )
        if isinstance(self.densify, dict):
            self.densify = DensifyConfig.from_dict(self.densify)

    @classmethod
    def fast(cls, steps: int = 3000, **overrides) -> GSConfig:
        """A schedule for short CPU runs (a few thousand steps): densify from step 100 every
        100 steps until 60 % of the run, one opacity reset, SH degree raised every 500 steps."""
        dens = {
            "refine_start": 100,
            "refine_every": 100,
            "refine_stop": int(steps * 0.6),
            "reset_every": max(steps // 2, 1000) if steps >= 2000 else 0,
        }
        dens.update(overrides.pop("densify", {}))
        kw = {"steps": steps, "sh_every": 500, "densify": DensifyConfig(**dens)}
        kw.update(overrides)
        return cls(**kw)


class TrainConfig(GSConfig):
    """Deprecated alias of :class:`GSConfig`."""

    def __post_init__(self) -> None:
        warnings.warn("raysplat.gs.TrainConfig is deprecated; use GSConfig", DeprecationWarning, stacklevel=3)
        super().__post_init__()


def _fused_adam_ok(device: torch.device) -> bool:
    """Whether this torch has a fused Adam for ``device`` (one kernel per step; on CPU it is
    several times faster than the default for-each implementation)."""
    try:
        p = torch.nn.Parameter(torch.zeros(1, device=device))
        torch.optim.Adam([p], fused=True)
    except (RuntimeError, ValueError, TypeError):
        return False
    return True


class Trainer(BaseTrainer):
    """Trains 3D Gaussians on a :class:`~raysplat.datasets.Scene` (or a dataset path).

    Cameras: ``scene.c2w`` (OpenGL camera-to-world) becomes OpenCV world-to-camera ``viewmats``
    (:func:`~raysplat.cameras.c2w_to_viewmat`). RGBA images (Blender with
    ``background="none"``) are composited on a random background per step and on
    ``eval_background`` for evaluation; RGB images are used as they are.

    Everything random (initialisation, view order, backgrounds) draws from one seeded generator
    that is checkpointed with the model, the optimizers and the density statistics, so
    :meth:`load_checkpoint` continues bit-identically on CPU.

    Args:
        scene: the training scene (``train`` split for training, ``test`` (else ``val``) for
            evaluation) or a dataset path; ``None`` only when restoring a checkpoint to render.
        config: hyper-parameters (default :class:`GSConfig`).
    """

    method = "gs"
    config_class = GSConfig
    data_parallel = True

    def __init__(
        self,
        scene: Scene | str | os.PathLike | None,
        config: GSConfig | None = None,
        _checkpoint: dict | None = None,
    ):
        super().__init__(config or GSConfig())
        cfg = self.config
        self.device = dev = check_device(distributed.local_device(cfg.device))
        distributed.check_batch("batch_cameras", cfg.batch_cameras)
        if isinstance(scene, (str, os.PathLike)):
            scene = load_scene(scene)
        if _checkpoint is not None:
            cams = _checkpoint["cameras"]
        elif scene is None:
            raise ValueError("scene: a Scene or a dataset path is needed to train")
        else:
            cams = camera_record(scene)
        self.scene, self.cams = scene, cams
        self.images = None if scene is None else scene.images.to(dev, torch.float32)
        self.c2w = cams["c2w"].float()
        self.viewmats = c2w_to_viewmat(self.c2w).to(dev)
        self.Ks = cams["K"].float().to(dev)
        self.width, self.height = cams["width"], cams["height"]
        split = cams["split"]
        self.train_ids = split["train"] if "train" in split else torch.arange(len(self.c2w))
        eval_split = next((s for s in ("test", "val") if s in split and len(split[s])), None)
        self.eval_split = eval_split
        self.test_ids = split[eval_split] if eval_split else self.train_ids
        self.extent = max(scene_extent(self.c2w[self.train_ids]), 1e-6)
        self.eval_bg = torch.tensor(_BACKGROUNDS[cfg.eval_background], device=dev)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.history: list[dict] = []
        self._perm = torch.zeros(0, dtype=torch.long)
        self._pos = 0
        if _checkpoint is None:
            self.model = self._init_model().to(dev)
        else:
            self.model = GaussianModel(**{k: _checkpoint["state"]["params"][k] for k in PARAM_NAMES}).to(dev)
        self.optimizers = self._make_optimizers()
        distributed.broadcast_tensors(self.model.params.values())  # rank 0's initialisation
        self.density = DensityControl(self.model, self.optimizers, cfg.densify, self.extent, self.generator)

    # ------------------------------------------------------------------ setup

    def _init_model(self) -> GaussianModel:
        cfg, sc = self.config, self.scene
        kw = {"sh_degree": cfg.sh_degree, "init_opacity": cfg.init_opacity, "init_scale": cfg.init_scale}
        if cfg.init not in ("auto", "points", "random"):
            path = Path(cfg.init)
            if not path.is_file():
                raise FileNotFoundError(f"init: {path}: no such PLY file")
            with open(path, "rb") as f:
                head = f.read(4096)
            if b"f_dc_0" in head:
                return load_ply(path)
            from raysplat.datasets._io import read_ply_points  # noqa: PLC0415

            pts, cols = read_ply_points(path)
            return GaussianModel.from_points(pts, cols, **kw)
        if cfg.init == "points" or (cfg.init == "auto" and sc.points is not None and len(sc.points) >= 4):
            if sc.points is None or len(sc.points) < 4:
                raise ValueError("init='points' but the scene has no point cloud (scene.points)")
            return GaussianModel.from_points(sc.points, sc.point_colors, **kw)
        return GaussianModel.random(cfg.init_random, sc.aabb, generator=self.generator, **kw)

    def _make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        cfg = self.config
        lrs = {
            "means": cfg.lr_means * self.extent,
            "quats": cfg.lr_quats,
            "scales": cfg.lr_scales,
            "opacities": cfg.lr_opacities,
            "sh0": cfg.lr_sh0,
            "shN": cfg.lr_shN,
        }
        fused = {"fused": True} if _fused_adam_ok(self.device) else {}
        return {
            k: torch.optim.Adam([{"params": [self.model.params[k]], "lr": lr, "name": k}], eps=1e-15, **fused)
            for k, lr in lrs.items()
        }

    def means_lr(self, step: int) -> float:
        """3DGS's exponential decay from ``lr_means`` to ``lr_means_final`` (times the extent)
        over the schedule (``steps``; the default length when only ``seconds`` is given)."""
        t = min(max(step / self.config.schedule_steps(), 0.0), 1.0)
        lr = math.exp(math.log(self.config.lr_means) * (1 - t) + math.log(self.config.lr_means_final) * t)
        return lr * self.extent

    def sh_degree_at(self, step: int) -> int:
        """The SH degree in use at ``step``."""
        return min(step // max(self.config.sh_every, 1), self.config.sh_degree, self.model.sh_degree)

    # ------------------------------------------------------------------ training

    def _next_view(self) -> int:
        if self._pos >= len(self._perm):
            self._perm = self.train_ids[torch.randperm(len(self.train_ids), generator=self.generator)]
            self._pos = 0
        i = int(self._perm[self._pos])
        self._pos += 1
        return i

    def _target(self, i: int, bg: torch.Tensor) -> torch.Tensor:
        if self.images is None:
            raise ValueError("this trainer has no images (restore the checkpoint with its scene)")
        img = self.images[i]
        if img.shape[-1] == 4:
            a = img[..., 3:4]
            return img[..., :3] * a + bg * (1 - a)
        return img[..., :3]

    def _train_step(self) -> dict:
        """One optimisation step on ``batch_cameras`` training views (their mean loss); returns
        loss, PSNR and #Gaussians.

        Under ``torch.distributed`` every rank draws the same views and backgrounds, renders its
        :func:`~raysplat.training.distributed.shard` of them with its loss weighted by its share,
        and the gradients and the density statistics (2D-gradient sums and visibility counts
        summed, screen radii maximised) are reduced over the ranks, so every rank takes the step,
        and densifies and prunes, as one process on all the views would."""
        cfg = self.config
        if self.images is None:
            raise ValueError("this trainer has no images (load the checkpoint with its scene to train)")
        step = self.step + 1  # 1-based index of this step (schedules count from 1)
        n_cam = cfg.batch_cameras
        ids = [self._next_view() for _ in range(n_cam)]
        if self.images.shape[-1] == 4 and cfg.background == "random":
            bg = torch.rand((n_cam, 3), generator=self.generator).to(self.device)
        elif self.images.shape[-1] == 4:
            bg = torch.tensor(_BACKGROUNDS[cfg.background], device=self.device).expand(n_cam, 3)
        else:
            bg = self.eval_bg.expand(n_cam, 3)
        world = distributed.world_size()
        if world > 1:
            part = distributed.shard(n_cam)
            ids, bg = ids[part], bg[part]
        gt = torch.stack([self._target(i, b) for i, b in zip(ids, bg, strict=True)])
        self.optimizers["means"].param_groups[0]["lr"] = self.means_lr(step)
        sel = torch.tensor(ids, device=self.device)
        img, _, meta = self.model.render(
            self.viewmats[sel],
            self.Ks[sel],
            self.width,
            self.height,
            sh_degree=self.sh_degree_at(step),
            backgrounds=bg,
            rasterize_mode=cfg.rasterize_mode,
        )
        if n_cam == 1:
            img, gt = img[0], gt[0]
        loss = photometric_loss(img, gt, cfg.ssim_lambda)
        self.density.pre_backward(meta)
        if world == 1:
            loss.backward()
            for opt in self.optimizers.values():
                opt.step()
                opt.zero_grad(set_to_none=True)
            info = self.density.post_backward(step, meta)
            return {"loss": float(loss.detach()), "psnr": psnr(img, gt), "n": len(self.model), **info}
        share = len(ids) / n_cam  # the loss is a mean over the cameras
        (loss * share).backward()
        n = len(self.model)
        inc = self.density.increments(meta, n_cameras=n_cam)
        if inc is None:
            inc = tuple(torch.zeros(n, device=self.device) for _ in range(3))
        mse = float(((img.detach() - gt) ** 2).mean())
        extra = torch.cat(
            [torch.tensor([float(loss.detach()) * share, mse * share], device=self.device), *inc[:2]]
        )
        red = distributed.all_reduce_grads(list(self.model.params.values()), extra)
        radii = distributed.all_reduce_max(inc[2])
        for opt in self.optimizers.values():
            opt.step()
            opt.zero_grad(set_to_none=True)
        info = self.density.post_backward(step, increments=(red[2 : 2 + n], red[2 + n :], radii))
        loss_all, mse_all = float(red[0]), float(red[1])
        return {"loss": loss_all, "psnr": -10 * math.log10(max(mse_all, 1e-10)), "n": len(self.model), **info}

    def on_step(self, stats: dict, progress) -> None:
        """Evaluates every ``eval_every`` steps and keeps the history."""
        every = self.config.eval_every
        if not (every and self.step % every == 0) or not distributed.is_main():
            return
        ev = self.evaluate()
        self.history.append(
            {
                "steps": self.step,
                "train_seconds": round(self.train_seconds, 3),
                "num_gaussians": stats["n"],
                "train_loss": stats["loss"],
                "psnr": ev["psnr"],
                "ssim": ev["ssim"],
            }
        )
        progress.write(
            f"step {self.step}: test PSNR {ev['psnr']:.2f} dB, SSIM {ev['ssim']:.4f}, "
            f"{stats['n']} Gaussians, {self.train_seconds:.1f} s"
        )

    # ------------------------------------------------------------------ rendering and evaluation

    @torch.no_grad()
    def render(
        self,
        c2w: torch.Tensor,
        K: torch.Tensor,
        width: int,
        height: int,
        background: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Renders OpenGL poses ``c2w`` ``[B, 3|4, 4]`` with intrinsics ``K`` (``[3, 3]`` or
        ``[B, 3, 3]``) on ``background`` (default ``eval_background``) to ``[B, H, W, 3]``."""
        c2w = c2w.reshape(-1, *c2w.shape[-2:]).float()
        b = c2w.shape[0]
        K = K.to(self.device, torch.float32).reshape(-1, 3, 3).expand(b, 3, 3)
        bg = self.eval_bg if background is None else background.to(self.device, torch.float32)
        vm = c2w_to_viewmat(c2w).to(self.device)
        imgs = [
            self.model.render(
                vm[j : j + 1],
                K[j : j + 1],
                width,
                height,
                backgrounds=bg[None],
                rasterize_mode=self.config.rasterize_mode,
            )[0][0]
            for j in range(b)
        ]
        return torch.stack(imgs).clamp(0, 1)

    def test_views(self) -> list[TestView]:
        """The test (else val) views on ``eval_background``; none without the scene's images."""
        if self.images is None:
            return []
        return [
            TestView(i, self.c2w[i], self.Ks[i], self._target(i, self.eval_bg))
            for i in self.test_ids.tolist()
        ]

    def extra_metrics(self) -> dict:
        return {"num_gaussians": len(self.model), "eval_split": self.eval_split, "history": self.history}

    def export(self, out_dir) -> list[Path]:
        """Writes ``gaussians.ply`` (the standard 3DGS layout)."""
        return [save_ply(self.model, Path(out_dir) / "gaussians.ply")]

    # ------------------------------------------------------------------ checkpoints

    def camera_info(self) -> dict:
        return self.cams

    def state_dict(self) -> dict:
        """Everything needed to continue bit-identically (not the scene)."""
        return {
            "params": {k: v.detach().clone() for k, v in self.model.params.items()},
            "optimizers": {k: opt.state_dict() for k, opt in self.optimizers.items()},
            "density": self.density.state_dict(),
            "generator": self.generator.get_state(),
            "perm": self._perm.clone(),
            "pos": self._pos,
            "history": list(self.history),
        }

    def load_state_dict(self, state: dict) -> None:
        for k, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][k])
        self.density.load_state_dict({k: v.to(self.device) for k, v in state["density"].items()})
        self.generator.set_state(state["generator"])
        self._perm, self._pos = state["perm"].clone(), int(state["pos"])
        self.history = list(state["history"])

    @classmethod
    def _restore(cls, checkpoint: dict, scene, config: GSConfig) -> Trainer:
        return cls(scene, config, _checkpoint=checkpoint)
