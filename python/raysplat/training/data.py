"""Scenes for training: one loader with one name per dataset option, and the check that a
scene is the one a checkpoint was trained on."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F

from raysplat.datasets import Scene, detect_format, load

#: ``background`` values: ``"none"`` keeps the alpha channel of RGBA data (the trainers then
#: composite on a random colour per step and on their evaluation background), the others are
#: composited by the loader
BACKGROUNDS = ("none", "white", "black", "random")


def load_scene(
    path: str | os.PathLike,
    downscale: int | None = None,
    holdout: int | None = None,
    background: str | None = None,
) -> Scene:
    """Loads a dataset for training with the CLI's options.

    Args:
        path: a Blender / LLFF / nerfstudio / COLMAP dataset directory.
        downscale: image downscale factor (LLFF / COLMAP / nerfstudio read ``images_<n>/``;
            Blender images are box-filtered here). ``None``: the format's default.
        holdout: every ``holdout``-th image is a test view (not for Blender, whose splits are
            files). ``None``: the format's default (8).
        background: how transparent pixels are treated (:data:`BACKGROUNDS`; default ``"none"``).
    """
    fmt = detect_format(path)
    if downscale is not None and (
        isinstance(downscale, bool) or int(downscale) != downscale or downscale < 1
    ):
        raise ValueError(f"downscale must be a positive integer, got {downscale!r}")
    if holdout is not None and (isinstance(holdout, bool) or int(holdout) != holdout or holdout < 0):
        raise ValueError(f"holdout must be an integer >= 0, got {holdout!r}")
    background = "none" if background is None else background
    if background not in BACKGROUNDS:
        raise ValueError(f"background must be one of {', '.join(BACKGROUNDS)}, got {background!r}")
    opts: dict = {}
    if fmt == "blender":
        opts["background"] = background
        if holdout is not None:
            raise ValueError("holdout: Blender scenes have their own train/val/test splits")
    elif background != "none":
        raise ValueError(f"background: {fmt} images have no alpha channel to composite")
    if fmt == "llff":
        opts.update({"factor": downscale} if downscale else {})
        opts.update({"llffhold": holdout} if holdout is not None else {})
    elif fmt in ("colmap", "nerfstudio"):
        opts.update({("factor" if fmt == "colmap" else "downscale"): downscale} if downscale else {})
        opts.update({"holdout": holdout} if holdout is not None else {})
    scene = load(path, format=fmt, **opts)
    if fmt == "blender" and downscale and downscale > 1:
        scene = _box_downscale(scene, int(downscale))
    options = {"downscale": downscale, "holdout": holdout, "background": background}
    if isinstance(scene.meta, dict):
        scene.meta = {**scene.meta, "path": str(Path(path).resolve()), "load_options": options}
    return scene


def _box_downscale(scene: Scene, factor: int) -> Scene:
    imgs = scene.images.permute(0, 3, 1, 2).float()
    h, w = imgs.shape[2] // factor * factor, imgs.shape[3] // factor * factor
    if h == 0 or w == 0:
        raise ValueError(f"downscale {factor} is larger than the images ({imgs.shape[2]}x{imgs.shape[3]})")
    small = F.avg_pool2d(imgs[:, :, :h, :w], factor).permute(0, 2, 3, 1).contiguous()
    K = scene.K.clone()
    K[..., :2, :] = K[..., :2, :] / factor
    scene.images, scene.K = small.to(scene.images.dtype), K
    return scene


def camera_record(scene: Scene) -> dict:
    """What a checkpoint keeps of a scene's cameras (enough to render and to recognise it)."""
    return {
        "c2w": scene.c2w.float().clone(),
        "K": scene.K.float().clone(),
        "width": int(scene.width),
        "height": int(scene.height),
        "split": {k: v.clone() for k, v in scene.split.items()},
        "format": scene.format,
        "forward_facing": bool(scene.forward_facing),
        "render_c2w": None if scene.render_c2w is None else scene.render_c2w.float().clone(),
        "path": scene.meta.get("path") if isinstance(scene.meta, dict) else None,
        "load_options": scene.meta.get("load_options", {}) if isinstance(scene.meta, dict) else {},
    }


def scene_for_checkpoint(record: dict, scene=None):
    """The scene to continue a checkpoint on: ``scene`` (a Scene or a dataset path, loaded with
    the checkpoint's dataset options) checked against ``record``, else the checkpoint's own
    dataset when it still exists, else ``None`` (enough to render)."""
    if scene is None:
        path = record.get("path")
        if not path or not Path(path).exists():
            return None
        scene = path
    if isinstance(scene, (str, os.PathLike)):
        scene = load_scene(scene, **record.get("load_options", {}))
    check_same_scene(
        record,
        scene,
        what=str(scene.meta.get("path", "the data")) if isinstance(scene.meta, dict) else "the data",
    )
    return scene


def check_same_scene(record: dict, scene: Scene, what: str = "the data") -> None:
    """Raises ``ValueError`` when ``scene`` is not the scene whose :func:`camera_record` is
    ``record`` (different image count, size or poses)."""
    c2w = scene.c2w.float()
    if c2w.shape != record["c2w"].shape:
        raise ValueError(
            f"{what} has {c2w.shape[0]} cameras but the checkpoint was trained on "
            f"{record['c2w'].shape[0]}: not the same scene"
        )
    if (int(scene.width), int(scene.height)) != (record["width"], record["height"]):
        raise ValueError(
            f"{what} has {scene.width}x{scene.height} images but the checkpoint was trained on "
            f"{record['width']}x{record['height']} (another scene or --downscale)"
        )
    if not torch.allclose(c2w, record["c2w"], atol=1e-4, rtol=1e-4):
        raise ValueError(f"{what}: the camera poses differ from the checkpoint's: not the same scene")
