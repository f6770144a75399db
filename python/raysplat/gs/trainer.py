"""3DGS training: :class:`TrainConfig` and :class:`Trainer` (optimisation, density control,
evaluation, checkpoints with exact resume, and the output files)."""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from raysplat.datasets.scene import Scene
from raysplat.gs.camera import c2w_to_viewmat, orbit_path, scene_extent
from raysplat.gs.loss import photometric_loss, psnr, ssim
from raysplat.gs.model import PARAM_NAMES, GaussianModel
from raysplat.gs.ply import load_ply, save_ply
from raysplat.gs.strategy import DensifyConfig, DensityControl

_BACKGROUNDS = {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0)}


@dataclass
class TrainConfig:
    """Training hyper-parameters (defaults: 3DGS, scaled to ``steps`` where it has a schedule)."""

    #: optimisation steps (one image each)
    steps: int = 7000
    seed: int = 0
    #: "cpu", "cuda", ... (CPU runs the Rust rasterizer)
    device: str = "cpu"
    #: maximum SH degree, raised by one every ``sh_every`` steps
    sh_degree: int = 3
    sh_every: int = 1000
    #: "auto" (the scene's points when it has them, else random), "points", "random" or a PLY
    #: path (a Gaussian PLY continues from it; a plain point cloud initialises from its points)
    init: str = "auto"
    #: Gaussians of the random initialisation (uniform in the scene box)
    init_random: int = 100_000
    init_opacity: float = 0.1
    init_scale: float = 1.0
    #: learning rates; ``lr_means`` decays exponentially to ``lr_means_final`` over ``steps``,
    #: both multiplied by the scene extent
    lr_means: float = 1.6e-4
    lr_means_final: float = 1.6e-6
    lr_quats: float = 1e-3
    lr_scales: float = 5e-3
    lr_opacities: float = 5e-2
    lr_sh0: float = 2.5e-3
    lr_shN: float = 2.5e-3 / 20
    #: weight of D-SSIM in the loss
    ssim_lambda: float = 0.2
    #: training background for RGBA images: "random" (per step), "white" or "black"
    background: str = "random"
    #: evaluation background (and training background for RGB images)
    eval_background: str = "white"
    #: evaluate on the test split every this many steps (0: only at the end)
    eval_every: int = 0
    #: "classic" or "antialiased"
    rasterize_mode: str = "classic"
    densify: DensifyConfig = field(default_factory=DensifyConfig)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        d = dict(d)
        d["densify"] = DensifyConfig(**d.get("densify", {}))
        return cls(**d)

    @classmethod
    def fast(cls, steps: int = 3000, **overrides) -> TrainConfig:
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


def _fused_adam_ok(device: torch.device) -> bool:
    """Whether this torch has a fused Adam for ``device`` (one kernel per step; on CPU it is
    several times faster than the default for-each implementation)."""
    try:
        p = torch.nn.Parameter(torch.zeros(1, device=device))
        torch.optim.Adam([p], fused=True)
    except (RuntimeError, ValueError, TypeError):
        return False
    return True


def _to_uint8(img: torch.Tensor) -> np.ndarray:
    return (img.detach().clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)


class Trainer:
    """Trains 3D Gaussians on a :class:`~raysplat.datasets.Scene`.

    Cameras: ``scene.c2w`` (OpenGL camera-to-world) becomes OpenCV world-to-camera ``viewmats``
    (:func:`~raysplat.gs.camera.c2w_to_viewmat`). RGBA images (Blender with
    ``background="none"``) are composited on a random background per step and on
    ``eval_background`` for evaluation; RGB images are used as they are.

    Everything random (initialisation, view order, backgrounds, splits) draws from one seeded
    generator that is checkpointed with the model, the optimizers and the density statistics,
    so :meth:`resume` continues bit-identically on CPU.

    Args:
        scene: the training scene; ``train`` split for training, ``test`` (else ``val``) for
            evaluation.
        config: hyper-parameters (default :class:`TrainConfig`).
        out: optional output directory for :meth:`save`.
    """

    def __init__(
        self,
        scene: Scene,
        config: TrainConfig | None = None,
        out: str | os.PathLike | None = None,
        _checkpoint: dict | None = None,
    ):
        self.scene = scene
        self.cfg = cfg = config or TrainConfig()
        if cfg.background not in ("random", *_BACKGROUNDS) or cfg.eval_background not in _BACKGROUNDS:
            raise ValueError(
                f"background must be 'random', 'white' or 'black' and eval_background 'white' or 'black', "
                f"got {cfg.background!r}, {cfg.eval_background!r}"
            )
        if cfg.steps < 1:
            raise ValueError(f"steps must be >= 1, got {cfg.steps}")
        self.out = None if out is None else Path(out)
        self.device = dev = torch.device(cfg.device)
        self.images = scene.images.to(dev, torch.float32)
        self.viewmats = c2w_to_viewmat(scene.c2w.float()).to(dev)
        self.Ks = scene.K.float().to(dev)
        self.width, self.height = scene.width, scene.height
        self.train_ids = scene.indices("train") if "train" in scene.split else torch.arange(len(scene.images))
        split = next((s for s in ("test", "val") if s in scene.split and len(scene.split[s])), None)
        self.eval_split = split
        self.test_ids = scene.split[split] if split else self.train_ids
        self.extent = max(scene_extent(scene.c2w[self.train_ids]), 1e-6)
        self.eval_bg = torch.tensor(_BACKGROUNDS[cfg.eval_background], device=dev)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.step = 0
        self.train_time = 0.0
        self.history: list[dict] = []
        self._perm = torch.zeros(0, dtype=torch.long)
        self._pos = 0
        if _checkpoint is None:
            self.model = self._init_model().to(dev)
        else:
            self.model = GaussianModel(**{k: _checkpoint["params"][k] for k in PARAM_NAMES}).to(dev)
        self.optimizers = self._make_optimizers()
        self.density = DensityControl(self.model, self.optimizers, cfg.densify, self.extent, self.generator)
        if _checkpoint is not None:
            self._load_state(_checkpoint)

    # ------------------------------------------------------------------ setup

    def _init_model(self) -> GaussianModel:
        cfg, sc = self.cfg, self.scene
        kw = {"sh_degree": cfg.sh_degree, "init_opacity": cfg.init_opacity, "init_scale": cfg.init_scale}
        if cfg.init not in ("auto", "points", "random"):
            path = Path(cfg.init)
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
        cfg = self.cfg
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
        """3DGS's exponential decay from ``lr_means`` to ``lr_means_final`` (times the extent)."""
        t = min(max(step / self.cfg.steps, 0.0), 1.0)
        lr = math.exp(math.log(self.cfg.lr_means) * (1 - t) + math.log(self.cfg.lr_means_final) * t)
        return lr * self.extent

    def sh_degree_at(self, step: int) -> int:
        return min(step // max(self.cfg.sh_every, 1), self.cfg.sh_degree, self.model.sh_degree)

    # ------------------------------------------------------------------ training

    def _next_view(self) -> int:
        if self._pos >= len(self._perm):
            self._perm = self.train_ids[torch.randperm(len(self.train_ids), generator=self.generator)]
            self._pos = 0
        i = int(self._perm[self._pos])
        self._pos += 1
        return i

    def _target(self, i: int, bg: torch.Tensor) -> torch.Tensor:
        img = self.images[i]
        if img.shape[-1] == 4:
            a = img[..., 3:4]
            return img[..., :3] * a + bg * (1 - a)
        return img[..., :3]

    def train_step(self) -> dict:
        """One optimisation step on one training view; returns loss, PSNR and #Gaussians."""
        cfg = self.cfg
        self.step += 1
        step = self.step
        i = self._next_view()
        if self.images.shape[-1] == 4 and cfg.background == "random":
            bg = torch.rand(3, generator=self.generator).to(self.device)
        elif self.images.shape[-1] == 4:
            bg = torch.tensor(_BACKGROUNDS[cfg.background], device=self.device)
        else:
            bg = self.eval_bg
        gt = self._target(i, bg)
        self.optimizers["means"].param_groups[0]["lr"] = self.means_lr(step)
        img, _, meta = self.model.render(
            self.viewmats[i : i + 1],
            self.Ks[i : i + 1],
            self.width,
            self.height,
            sh_degree=self.sh_degree_at(step),
            backgrounds=bg[None],
            rasterize_mode=cfg.rasterize_mode,
        )
        img = img[0]
        loss = photometric_loss(img, gt, cfg.ssim_lambda)
        self.density.pre_backward(meta)
        loss.backward()
        for opt in self.optimizers.values():
            opt.step()
            opt.zero_grad(set_to_none=True)
        info = self.density.post_backward(step, meta)
        return {"loss": float(loss.detach()), "psnr": psnr(img, gt), "n": len(self.model), **info}

    def train(self, until: int | None = None, progress: bool = True) -> dict:
        """Trains up to step ``until`` (default ``config.steps``); returns the last evaluation
        (when one ran) and training statistics."""
        from tqdm import tqdm  # noqa: PLC0415

        end = self.cfg.steps if until is None else until
        result: dict = {}
        bar = tqdm(total=end, initial=self.step, disable=not progress, dynamic_ncols=True, desc="train gs")
        ema = None
        try:
            while self.step < end:
                t0 = time.perf_counter()
                r = self.train_step()
                self.train_time += time.perf_counter() - t0
                ema = r["psnr"] if ema is None else 0.9 * ema + 0.1 * r["psnr"]
                bar.update(1)
                if self.step % 10 == 0 or self.step == end:
                    bar.set_postfix(loss=f"{r['loss']:.4f}", psnr=f"{ema:.2f}", n=r["n"])
                every = self.cfg.eval_every
                if (every and self.step % every == 0) or self.step == self.cfg.steps:
                    ev = self.evaluate()
                    result = ev
                    self.history.append(
                        {
                            "step": self.step,
                            "wall_s": round(self.train_time, 3),
                            "num_gaussians": r["n"],
                            "train_loss": r["loss"],
                            **{f"test_{k}": v for k, v in ev.items() if k != "views"},
                        }
                    )
                    if progress:
                        bar.write(
                            f"step {self.step}: test PSNR {ev['psnr']:.2f} dB, SSIM {ev['ssim']:.4f}, "
                            f"{r['n']} Gaussians, {self.train_time:.1f} s"
                        )
        finally:
            bar.close()
        return result

    # ------------------------------------------------------------------ evaluation

    @torch.no_grad()
    def render_view(
        self, c2w: torch.Tensor, K: torch.Tensor | None = None, background: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Renders an OpenGL camera-to-world pose ``[3, 4]`` (intrinsics default: the first
        camera's) to an ``[H, W, 3]`` image in [0, 1]."""
        K = self.Ks[0] if K is None else K.to(self.device, torch.float32)
        bg = self.eval_bg if background is None else background.to(self.device, torch.float32)
        vm = c2w_to_viewmat(c2w.float()[None]).to(self.device)
        img, _, _ = self.model.render(
            vm, K[None], self.width, self.height, backgrounds=bg[None], rasterize_mode=self.cfg.rasterize_mode
        )
        return img[0].clamp(0, 1)

    @torch.no_grad()
    def evaluate(self, ids: torch.Tensor | None = None, return_images: bool = False) -> dict:
        """Mean PSNR / SSIM over the test views (``ids``, default the test or val split) with
        ``eval_background``; ``views`` holds the per-view values (and images when asked)."""
        ids = self.test_ids if ids is None else ids
        views = []
        for i in ids.tolist():
            img, _, _ = self.model.render(
                self.viewmats[i : i + 1],
                self.Ks[i : i + 1],
                self.width,
                self.height,
                backgrounds=self.eval_bg[None],
                rasterize_mode=self.cfg.rasterize_mode,
            )
            img = img[0].clamp(0, 1)
            gt = self._target(i, self.eval_bg)
            v = {"index": i, "psnr": psnr(img, gt), "ssim": float(ssim(img, gt))}
            if return_images:
                v["image"], v["target"] = img.cpu(), gt.cpu()
            views.append(v)
        return {
            "psnr": float(np.mean([v["psnr"] for v in views])),
            "ssim": float(np.mean([v["ssim"] for v in views])),
            "views": views,
        }

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict:
        """Everything needed to continue bit-identically (not the scene)."""
        return {
            "step": self.step,
            "config": asdict(self.cfg),
            "params": {k: v.detach().clone() for k, v in self.model.params.items()},
            "optimizers": {k: opt.state_dict() for k, opt in self.optimizers.items()},
            "density": self.density.state_dict(),
            "generator": self.generator.get_state(),
            "perm": self._perm.clone(),
            "pos": self._pos,
            "train_time": self.train_time,
            "history": list(self.history),
        }

    def _load_state(self, ck: dict) -> None:
        for k, opt in self.optimizers.items():
            opt.load_state_dict(ck["optimizers"][k])
        self.density.load_state_dict({k: v.to(self.device) for k, v in ck["density"].items()})
        self.generator.set_state(ck["generator"])
        self.step, self._perm, self._pos = int(ck["step"]), ck["perm"].clone(), int(ck["pos"])
        self.train_time = float(ck["train_time"])
        self.history = list(ck["history"])

    def save_checkpoint(self, path: str | os.PathLike) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        torch.save(self.state_dict(), p)
        return p

    @classmethod
    def resume(
        cls, scene: Scene, path: str | os.PathLike, out: str | os.PathLike | None = None, **overrides
    ) -> Trainer:
        """A trainer continuing the checkpoint at ``path`` on ``scene`` (the same scene).
        ``overrides`` replace config fields (e.g. ``steps`` to train longer, ``device``)."""
        ck = torch.load(path, map_location="cpu", weights_only=False)
        cfg = TrainConfig.from_dict({**ck["config"], **overrides})
        return cls(scene, cfg, out=out, _checkpoint=ck)

    # ------------------------------------------------------------------ outputs

    def save(self, out: str | os.PathLike | None = None, renders: bool = True, gif_frames: int = 40) -> dict:
        """Writes ``gaussians.ply``, ``checkpoint.pt``, ``metrics.json`` (final test PSNR / SSIM,
        per-view values, history) and, with ``renders``, ``renders/test_<index>.png`` and
        ``turntable.gif``. Returns the metrics."""
        from PIL import Image  # noqa: PLC0415

        out = Path(out) if out is not None else self.out
        if out is None:
            raise ValueError("no output directory (pass out= here or to Trainer)")
        out.mkdir(parents=True, exist_ok=True)
        save_ply(self.model, out / "gaussians.ply")
        self.save_checkpoint(out / "checkpoint.pt")
        ev = self.evaluate(return_images=renders)
        metrics = {
            "step": self.step,
            "train_seconds": round(self.train_time, 3),
            "num_gaussians": len(self.model),
            "eval_split": self.eval_split,
            "test_psnr": ev["psnr"],
            "test_ssim": ev["ssim"],
            "views": [{k: v[k] for k in ("index", "psnr", "ssim")} for v in ev["views"]],
            "history": self.history,
            "config": asdict(self.cfg),
        }
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        if renders:
            rd = out / "renders"
            rd.mkdir(exist_ok=True)
            for v in ev["views"]:
                Image.fromarray(_to_uint8(v["image"])).save(rd / f"test_{v['index']:04d}.png")
            if gif_frames > 0:
                poses = (
                    self.scene.render_c2w
                    if self.scene.render_c2w is not None
                    else orbit_path(self.scene.c2w[self.train_ids], gif_frames)
                )
                frames = [Image.fromarray(_to_uint8(self.render_view(p))) for p in poses]
                frames[0].save(
                    out / "turntable.gif", save_all=True, append_images=frames[1:], duration=80, loop=0
                )
        return metrics
