"""The trainer lifecycle every method shares (NeRF, 3DGS and the methods built on them).

A method subclasses :class:`Trainer`, sets :attr:`Trainer.method` and
:attr:`Trainer.config_class`, and implements five things:

* ``_train_step() -> dict`` — one optimisation step (the public :meth:`Trainer.train_step`
  wraps it and advances ``self.step``);
* ``render(c2w, K, width, height) -> [B, H, W, 3]`` — any OpenGL cameras, values in [0, 1];
* ``test_views() -> list[TestView]`` — the reference views :meth:`evaluate` scores (empty for
  methods without reference images: their ``psnr`` / ``ssim`` are ``None``);
* ``state_dict()`` / ``load_state_dict(state)`` — everything needed to continue bit-identically;
* ``_restore(checkpoint, scene, config)`` (classmethod) — a trainer from a checkpoint.

The base provides the rest, the same for everyone: :meth:`train` (step and time budgets,
progress, callback), :meth:`evaluate` (mean PSNR / SSIM at the dataset's resolution, median
render time), :meth:`save_checkpoint` / :meth:`load_checkpoint` (one self-contained
``checkpoint.pt`` with ``method`` and ``version`` keys), :meth:`write_outputs` (the layout of
:mod:`raysplat.training.outputs`) and :meth:`run` (train, then write everything; a failure
after training never loses the checkpoint or ``metrics.json``).

Under an initialised ``torch.distributed`` process group (``torchrun``, see
:mod:`raysplat.training.distributed`) the methods train data-parallel; the base keeps the ranks
in step: progress, checkpoints and outputs come from rank 0 only, the training clock is rank 0's
(time budgets stop every rank at the same step), and :meth:`write_outputs` / :meth:`run` are
collective (every rank calls them; rank 0's errors are raised on every rank).
"""

from __future__ import annotations

import importlib
import os
import statistics
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from raysplat.cameras import orbit_path, spiral_path
from raysplat.metrics import psnr, ssim
from raysplat.training import distributed, outputs
from raysplat.training.config import TrainingConfig
from raysplat.training.data import scene_for_checkpoint
from raysplat.training.progress import Progress

#: checkpoint format version written by :meth:`Trainer.save_checkpoint`
CHECKPOINT_VERSION = 1

#: camera paths of :meth:`Trainer.camera_path`
PATHS = ("turntable", "spiral", "test")

#: method name -> ``module:class`` of its trainer (for :func:`load_checkpoint`)
METHODS: dict[str, str] = {
    "nerf": "raysplat.nerf.trainer:Trainer",
    "gs": "raysplat.gs.trainer:Trainer",
    "text3d": "raysplat.text3d.trainer:Trainer",
    "nerdf": "raysplat.nerdf.trainer:Trainer",
}


@dataclass
class TestView:
    """A reference view: its index in the scene, OpenGL pose ``[3, 4]``, ``K`` ``[3, 3]`` and
    ground-truth image ``[H, W, 3]`` in [0, 1]."""

    index: int
    c2w: torch.Tensor
    K: torch.Tensor
    image: torch.Tensor


def scene_test_views(scene, c2w, K, eval_views: int | None, background) -> list[TestView]:
    """The scene's test split (the first ``eval_views``; all when ``None``) as :class:`TestView`,
    RGBA ground truth composited on ``background`` (``[3]``; ``None`` means white)."""
    idx = scene.indices("test").tolist()
    if eval_views is not None:
        idx = idx[:eval_views]
    bk = torch.ones(3) if background is None else background.detach().cpu().float()
    views = []
    for i in idx:
        img = scene.images[i].float()
        if img.shape[-1] == 4:
            img = img[..., :3] * img[..., 3:] + bk * (1.0 - img[..., 3:])
        views.append(TestView(i, c2w[i], K[i], img))
    return views


class Trainer(ABC):
    """Base of every method's trainer (see the module docstring for the contract)."""

    #: the method's name (checkpoints and ``metrics.json`` carry it)
    method: ClassVar[str] = ""
    #: its :class:`~raysplat.training.config.TrainingConfig` subclass
    config_class: ClassVar[type[TrainingConfig]] = TrainingConfig
    #: whether the method trains data-parallel under a ``torch.distributed`` process group
    #: (others refuse to start under one rather than repeat the same work on every rank)
    data_parallel: ClassVar[bool] = False

    def __init__(self, config: TrainingConfig):
        if not isinstance(config, self.config_class):
            raise TypeError(f"config must be a {self.config_class.__name__}, got {type(config).__name__}")
        if distributed.is_distributed() and not self.data_parallel:
            raise ValueError(
                f"{self.method}: data-parallel training (torchrun, torch.distributed) is supported for "
                "gs and nerf only; run it as one process"
            )
        self.config = config
        self.step = 0
        self.train_seconds = 0.0
        self.cpu_seconds = 0.0

    # ------------------------------------------------------------------ the method's part
    @abstractmethod
    def _train_step(self) -> dict:
        """One optimisation step at ``self.step`` (0-based); returns at least ``{"loss": float}``."""

    @abstractmethod
    def render(self, c2w: torch.Tensor, K: torch.Tensor, width: int, height: int) -> torch.Tensor:
        """Renders OpenGL cameras ``c2w`` ``[B, 3|4, 4]`` with intrinsics ``K`` (``[3, 3]`` or
        ``[B, 3, 3]``, pixels) to ``[B, height, width, 3]`` images in [0, 1]."""

    @abstractmethod
    def test_views(self) -> list[TestView]:
        """The views :meth:`evaluate` scores (empty when the method has no reference images)."""

    @abstractmethod
    def state_dict(self) -> dict:
        """The method's state (model, optimisers, RNG, ...): with the config and step, enough to
        continue bit-identically."""

    @abstractmethod
    def load_state_dict(self, state: dict) -> None:
        """Restores :meth:`state_dict`."""

    @classmethod
    @abstractmethod
    def _restore(cls, checkpoint: dict, scene: Any, config: TrainingConfig) -> Trainer:
        """A trainer built from ``checkpoint`` (before its state is loaded) on ``scene`` (a
        ``Scene`` already checked to match, or ``None``: what the checkpoint holds suffices to
        render)."""

    def camera_info(self) -> dict:
        """What the checkpoint keeps of the cameras (default: nothing)."""
        return {}

    def camera_path(self, kind: str, frames: int) -> tuple[torch.Tensor, torch.Tensor, int, int]:
        """``(c2w [F, 3, 4], K [3, 3], width, height)`` of a camera path over the checkpointed
        cameras (:meth:`camera_info`): ``"turntable"`` (an orbit fitted to the training cameras;
        for forward-facing scenes the spiral), ``"spiral"`` (the dataset's render path, e.g.
        LLFF's, else a spiral in front of the cameras) or ``"test"`` (the test cameras)."""
        cams = self.camera_info()
        if not cams:
            raise ValueError(f"{self.method}: the checkpoint holds no cameras to build a path from")
        if kind not in PATHS:
            raise ValueError(f"path must be one of {', '.join(PATHS)}, got {kind!r}")
        if frames < 1 and kind != "test":
            raise ValueError(f"frames must be >= 1, got {frames}")
        c2w, split = cams["c2w"], cams["split"]
        train = c2w[split["train"]] if "train" in split and len(split["train"]) else c2w
        render_path = cams.get("render_c2w")
        if kind == "test":
            ids = next((split[s] for s in ("test", "val") if s in split and len(split[s])), None)
            if ids is None:
                raise ValueError("path 'test': the scene has no test views")
            poses = c2w[ids]
        elif kind == "spiral" or cams.get("forward_facing"):
            poses = render_path if render_path is not None else spiral_path(train, frames)
            if render_path is not None and frames < len(render_path):  # `frames` evenly spaced poses
                poses = render_path[torch.linspace(0, len(render_path) - 1, frames).round().long()]
        else:
            poses = orbit_path(train, frames)
        return poses, cams["K"][0], int(cams["width"]), int(cams["height"])

    def export(self, out_dir: str | os.PathLike) -> list[Path]:
        """Writes the method's standard export (e.g. a PLY or a mesh) to ``out_dir``."""
        return []

    def extra_metrics(self) -> dict:
        """Method-specific ``metrics.json`` entries."""
        return {}

    def on_step(self, stats: dict, progress: Progress) -> None:
        """Called after every step (e.g. periodic evaluation); nothing by default."""
        return None

    def elapsed(self) -> float:
        """Training time so far, in seconds (what ``seconds`` budgets measure)."""
        return self.train_seconds

    # ------------------------------------------------------------------ training
    def train_step(self) -> dict:
        """One optimisation step; advances :attr:`step` and returns the step's stats."""
        stats = self._train_step()
        self.step += 1
        return stats

    def train(
        self,
        steps: int | None = None,
        seconds: float | None = None,
        progress: bool = True,
        callback: Callable[[Trainer, dict], None] | None = None,
    ) -> dict:
        """Trains until step ``steps`` or ``seconds`` of training time, whichever comes first
        (defaults: ``config.steps`` / ``config.seconds``; both are totals, counted from the start
        of the run, so a resumed trainer continues to the same end). ``callback(trainer, stats)``
        runs after each step. Returns the last step's stats."""
        end = self.config.steps if steps is None else steps
        limit = self.config.seconds if seconds is None else seconds
        if end is not None and end < self.step:
            raise ValueError(f"steps {end} is below the trainer's current step {self.step}")
        bar = Progress(
            end, f"train {self.method}", enabled=progress and distributed.is_main(), initial=self.step
        )
        last: dict = {}
        t0, c0 = time.perf_counter(), time.process_time()
        base, cbase = self.train_seconds, self.cpu_seconds
        try:
            while (end is None or self.step < end) and not (limit and self.elapsed() >= limit):
                last = self.train_step()
                self.train_seconds = base + time.perf_counter() - t0
                self.cpu_seconds = cbase + time.process_time() - c0
                distributed.sync_clock(self)  # rank 0's clock on every rank (same stopping step)
                shown = {k: f"{v:.4g}" for k, v in last.items() if isinstance(v, float)}
                bar.update(1, **shown)
                self.on_step(last, bar)
                if callback is not None:
                    callback(self, last)
        finally:
            bar.close()
        return last

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self, return_images: bool = False) -> dict:
        """Scores :meth:`test_views`: ``psnr`` / ``ssim`` (means; SSIM with valid windows, see
        :mod:`raysplat.metrics`; ``None`` without reference views), ``render_ms_per_frame``
        (median over the views, after one warm-up render, image writing excluded) and ``views``
        (per view: ``index``, ``psnr``, ``ssim``, and ``image`` / ``target`` when asked)."""
        views = self.test_views()
        result: dict = {"psnr": None, "ssim": None, "render_ms_per_frame": None, "views": []}
        if not views:
            return result
        v0 = views[0]
        h, w = v0.image.shape[:2]
        self.render(v0.c2w[None], v0.K, w, h)  # warm-up (caches, thread pools)
        times, rows = [], []
        for v in views:
            t0 = time.perf_counter()
            img = self.render(v.c2w[None], v.K, w, h)[0].cpu().clamp(0, 1)
            times.append(time.perf_counter() - t0)
            gt = v.image.float().cpu()
            row = {"index": v.index, "psnr": psnr(img, gt), "ssim": ssim(img, gt)}
            if return_images:
                row["image"], row["target"] = img, gt
            rows.append(row)
        result["psnr"] = sum(r["psnr"] for r in rows) / len(rows)
        result["ssim"] = sum(r["ssim"] for r in rows) / len(rows)
        result["render_ms_per_frame"] = 1000 * statistics.median(times)
        result["views"] = rows
        return result

    # ------------------------------------------------------------------ checkpoints
    def checkpoint(self) -> dict:
        """The self-contained checkpoint dict (see :meth:`save_checkpoint`)."""
        return {
            "method": self.method,
            "version": CHECKPOINT_VERSION,
            "config": self.config.to_dict(),
            "cameras": self.camera_info(),
            "step": self.step,
            "train_seconds": self.train_seconds,
            "cpu_seconds": self.cpu_seconds,
            "state": self.state_dict(),
        }

    def save_checkpoint(self, path: str | os.PathLike) -> Path:
        """Writes ``checkpoint.pt``-style file ``path`` (atomically): method, format version,
        config, cameras, step, training time and the method's state. Under ``torch.distributed``
        only rank 0 writes (every rank holds the same state); the others return ``path``."""
        p = Path(path)
        if not distributed.is_main():
            return p
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + ".tmp")
        torch.save(self.checkpoint(), tmp)
        tmp.replace(p)
        return p

    @classmethod
    def load_checkpoint(cls, path: str | os.PathLike, scene: Any = None, **overrides: Any) -> Trainer:
        """The trainer saved at ``path``, ready to continue bit-identically (on CPU).

        Args:
            path: a checkpoint written by :meth:`save_checkpoint`.
            scene: the training data (a ``Scene`` or a dataset path) when the method needs it to
                train or evaluate; checked to be the checkpoint's scene.
            **overrides: config fields to change (e.g. ``steps`` to train longer, ``device``).
        """
        ck = read_checkpoint(path)
        if ck["method"] != cls.method:
            raise ValueError(
                f"{path}: a {ck['method']} checkpoint, not {cls.method} "
                f"(use `raysplat train {ck['method']} --resume` or raysplat.{ck['method']})"
            )
        config = cls.config_class.from_dict({**ck["config"], **overrides})
        if config.steps is not None and config.steps < int(ck["step"]):
            raise ValueError(f"steps {config.steps} is below the checkpoint's step {int(ck['step'])}")
        if ck.get("cameras"):
            scene = scene_for_checkpoint(ck["cameras"], scene)
        trainer = cls._restore(ck, scene, config)
        trainer.load_state_dict(ck["state"])
        trainer.step = int(ck["step"])
        trainer.train_seconds = float(ck["train_seconds"])
        trainer.cpu_seconds = float(ck.get("cpu_seconds", 0.0))
        return trainer

    # ------------------------------------------------------------------ outputs
    def render_video(self, out_stem: str | os.PathLike, frames: int, fps: int = 20) -> list[Path]:
        """Renders the default camera path (:meth:`video_cameras`) as GIF and MP4."""
        c2w, K, w, h = self.camera_path("turntable", frames)
        imgs = [self.render(c[None], K, w, h)[0].cpu() for c in c2w]
        return outputs.save_video(out_stem, imgs, fps)

    def metrics(self, evaluation: dict) -> dict:
        """``metrics.json``'s content: the shared keys, then :meth:`extra_metrics`."""
        return {
            "method": self.method,
            "psnr": evaluation["psnr"],
            "ssim": evaluation["ssim"],
            "steps": self.step,
            "train_seconds": round(self.train_seconds, 3),
            "render_ms_per_frame": evaluation["render_ms_per_frame"],
            "views": [{k: v[k] for k in ("index", "psnr", "ssim")} for v in evaluation["views"]],
            **self.extra_metrics(),
            "config": self.config.to_dict(),
        }

    def write_outputs(self, out_dir: str | os.PathLike, frames: int = 40) -> dict:
        """Writes the run directory: checkpoint first, then ``metrics.json`` and the test images,
        the export, and the video (``frames`` 0: none). Returns the metrics. Under
        ``torch.distributed`` rank 0 evaluates and writes, every rank returns its metrics."""
        if frames < 0:
            raise ValueError(f"frames must be >= 0, got {frames}")
        return distributed.run_on_main(self._write_outputs, out_dir, frames)

    def _write_outputs(self, out_dir: str | os.PathLike, frames: int) -> dict:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.save_checkpoint(out / outputs.CHECKPOINT)
        ev = self.evaluate(return_images=True)
        m = self.metrics(ev)
        outputs.write_metrics(out / outputs.METRICS, m)
        for v in ev["views"]:
            outputs.save_image(out / outputs.TEST_DIR / f"{v['index']:04d}_pred.png", v["image"])
            outputs.save_image(out / outputs.TEST_DIR / f"{v['index']:04d}_gt.png", v["target"])
        self.export(out)
        if frames > 0:
            self.render_video(out / outputs.VIDEO_DIR / "turntable", frames)
        return m

    def run(
        self, out_dir: str | os.PathLike, frames: int = 40, progress: bool = True, force: bool = False
    ) -> dict:
        """Trains (``config`` budgets) and writes every output to ``out_dir`` (refused when not
        empty unless ``force``); returns the metrics."""
        out = distributed.run_on_main(outputs.prepare_dir, out_dir, force=force)
        if frames < 0:
            raise ValueError(f"frames must be >= 0, got {frames}")
        self.train(progress=progress)
        return self.write_outputs(out, frames)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Reads a raysplat checkpoint; ``ValueError`` naming the file when it is not one."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such checkpoint")
    try:
        ck = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        raise ValueError(f"{p}: not a raysplat checkpoint ({type(e).__name__})") from e
    if not isinstance(ck, dict) or "method" not in ck or "version" not in ck:
        raise ValueError(f"{p}: not a raysplat checkpoint")
    if ck["version"] > CHECKPOINT_VERSION:
        raise ValueError(f"{p}: checkpoint format {ck['version']} is newer than this raysplat's")
    if ck["method"] not in METHODS:
        raise ValueError(f"{p}: unknown method {ck['method']!r}")
    return ck


def trainer_class(method: str) -> type[Trainer]:
    """The trainer class of ``method`` (imported lazily)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r} (known: {', '.join(METHODS)})")
    module, name = METHODS[method].split(":")
    return getattr(importlib.import_module(module), name)


def load_checkpoint(path: str | os.PathLike, scene: Any = None, **overrides: Any) -> Trainer:
    """The trainer of any method's checkpoint (the method is read from the file)."""
    return trainer_class(read_checkpoint(path)["method"]).load_checkpoint(path, scene, **overrides)
