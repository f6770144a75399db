"""One output layout for every method, and the writers behind it.

A run directory holds::

    checkpoint.pt              self-contained checkpoint (config, cameras, method, format version)
    metrics.json               psnr, ssim, steps, train_seconds, render_ms_per_frame, ... (same keys
                               for every method, plus method-specific ones)
    test/0003_pred.png         test views, named by their index in the scene
    test/0003_gt.png           ... and the ground truth beside each
    video/turntable.gif        camera-path videos, as GIF and MP4 (H.264 through imageio-ffmpeg's
    video/turntable.mp4        bundled ffmpeg: no system package needed)
    <export>                   the method's export (gaussians.ply, mesh.glb, ...)
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

#: names inside a run directory
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"
TEST_DIR = "test"
VIDEO_DIR = "video"


def prepare_dir(path: str | os.PathLike, force: bool = False) -> Path:
    """Creates the output directory ``path``; a non-empty one is refused (``FileExistsError``)
    unless ``force``."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise FileExistsError(f"{p}: exists and is not a directory")
    if p.is_dir() and any(p.iterdir()) and not force:
        raise FileExistsError(f"{p}: output directory is not empty (use --force to write into it)")
    p.mkdir(parents=True, exist_ok=True)
    return p


def to_uint8(img: torch.Tensor | np.ndarray) -> np.ndarray:
    """An ``[H, W, C]`` float image in [0, 1] (tensor or array) as uint8 (rounded, clamped)."""
    if isinstance(img, torch.Tensor):
        img = img.detach().float().cpu().numpy()
    img = np.asarray(img)
    if img.dtype == np.uint8:
        return img
    return (np.clip(img, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def save_image(path: str | os.PathLike, img: torch.Tensor | np.ndarray) -> Path:
    """Writes an ``[H, W, 3|4]`` image in [0, 1] (or uint8) as PNG."""
    from PIL import Image  # noqa: PLC0415

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8(img)).save(p)
    return p


def save_video(
    path_stem: str | os.PathLike, frames: Sequence[torch.Tensor | np.ndarray], fps: int = 20
) -> list[Path]:
    """Writes ``frames`` (``[H, W, 3]`` in [0, 1] or uint8) as ``<stem>.gif`` and ``<stem>.mp4``
    (H.264, yuv420p; odd sizes are padded by one pixel, as the codec needs even sizes). Returns
    both paths."""
    from PIL import Image  # noqa: PLC0415

    if len(frames) == 0:
        raise ValueError("frames must not be empty")
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    imgs = [to_uint8(f)[..., :3] for f in frames]
    gif = stem.with_suffix(".gif")
    pil = [Image.fromarray(x) for x in imgs]
    pil[0].save(gif, save_all=True, append_images=pil[1:], duration=max(1, round(1000 / fps)), loop=0)
    mp4 = stem.with_suffix(".mp4")
    _write_mp4(mp4, imgs, fps)
    return [gif, mp4]


def _write_mp4(path: Path, imgs: list[np.ndarray], fps: int) -> None:
    import imageio_ffmpeg  # noqa: PLC0415

    h, w = imgs[0].shape[:2]
    ph, pw = h + h % 2, w + w % 2
    writer = imageio_ffmpeg.write_frames(
        str(path),
        (pw, ph),
        fps=fps,
        codec="libx264",
        pix_fmt_out="yuv420p",
        macro_block_size=1,
        output_params=["-loglevel", "error"],
    )
    writer.send(None)
    try:
        for x in imgs:
            if x.shape[:2] != (ph, pw):
                x = np.pad(x, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
            writer.send(np.ascontiguousarray(x))
    finally:
        writer.close()


def _json_safe(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if isinstance(v, torch.Tensor):
        return _json_safe(v.tolist())
    if isinstance(v, (np.floating, np.integer)):
        return _json_safe(v.item())
    return v


def write_metrics(path: str | os.PathLike, metrics: dict) -> Path:
    """Writes ``metrics`` as indented JSON (non-finite floats as ``null`` / ``"inf"``)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_json_safe(metrics), indent=2))
    tmp.replace(p)
    return p
