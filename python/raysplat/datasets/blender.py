"""NeRF-Blender synthetic scenes: ``transforms_{train,val,test}.json`` + RGBA PNGs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from raysplat.datasets._io import (
    fail,
    image_file,
    key,
    matrix,
    number,
    read_images,
    read_json,
    read_ply_points,
)
from raysplat.datasets.scene import Scene

#: Background choices for :func:`load_blender`.
BACKGROUNDS = ("white", "black", "random", "none")


def load_blender(
    path: str | Path,
    background: str = "white",
    splits: Sequence[str] = ("train", "val", "test"),
    seed: int = 0,
) -> Scene:
    """Loads a NeRF-Blender synthetic scene.

    Args:
        path: the scene directory holding ``transforms_<split>.json``.
        background: how transparent pixels are composited: ``"white"`` (the evaluation
            convention), ``"black"``, ``"random"`` (one random colour per image, from ``seed``) or
            ``"none"`` (keep straight-alpha RGBA images, ``C = 4``).
        splits: the splits to read (each needs its JSON file); images are concatenated in this
            order and ``Scene.split`` maps each name to its indices.

    Returns:
        A :class:`Scene` with ``near = 2``, ``far = 6``, ``aabb = [-1.5]*3 + [1.5]*3``; intrinsics
        ``f = W / (2 tan(camera_angle_x / 2))`` (``camera_angle_y`` for ``fy`` when present),
        principal point at the image centre; ``points`` from ``points3d.ply`` when present.
        ``meta``: ``files``, ``camera_angle_x``, ``background``.
    """
    root = Path(path)
    if background not in BACKGROUNDS:
        raise ValueError(f"background must be one of {', '.join(map(repr, BACKGROUNDS))}, got {background!r}")
    files: list[Path] = []
    c2ws: list[np.ndarray] = []
    split: dict[str, torch.Tensor] = {}
    fov: list[tuple[Path, float, float | None]] = []
    for s in splits:
        jp = root / f"transforms_{s}.json"
        data = read_json(jp)
        angle_x = number(jp, key(jp, data, "camera_angle_x"), "camera_angle_x")
        if not 0 < angle_x < math.pi:
            raise fail(jp, f"camera_angle_x must be in (0, pi) radians, got {angle_x}")
        angle_y = data.get("camera_angle_y")
        angle_y = None if angle_y is None else number(jp, angle_y, "camera_angle_y")
        fov.append((jp, angle_x, angle_y))
        frames = key(jp, data, "frames")
        if not isinstance(frames, list):
            raise fail(jp, f"'frames' must be a list, got {type(frames).__name__}")
        start = len(files)
        for i, fr in enumerate(frames):
            where = f"frames[{i}]"
            fp = key(jp, fr, "file_path", where)
            if not isinstance(fp, str):
                raise fail(jp, f"{where}.file_path must be a string, got {fp!r}")
            m = matrix(
                jp, key(jp, fr, "transform_matrix", where), ((4, 4), (3, 4)), f"{where}.transform_matrix"
            )
            files.append(image_file(root, fp))
            c2ws.append(m[:3, :4])
        split[s] = torch.arange(start, len(files), dtype=torch.int64)
    if len({(a, b) for _, a, b in fov}) > 1:
        raise fail(fov[-1][0], "camera_angle_x / camera_angle_y differ between the split files")
    images = read_images(files, rgba=True)
    n, h, w = images.shape[0], images.shape[1] if len(files) else 0, images.shape[2] if len(files) else 0
    if background != "none" and n:
        alpha = images[..., 3:4]
        if background == "random":
            g = torch.Generator().manual_seed(seed)
            bg = torch.rand((n, 1, 1, 3), generator=g)
        else:
            bg = torch.full((1, 1, 1, 3), 1.0 if background == "white" else 0.0)
        images = images[..., :3] * alpha + bg * (1 - alpha)
    _, angle_x, angle_y = fov[0] if fov else (None, 0.6911, None)
    fx = 0.5 * w / math.tan(0.5 * angle_x)
    fy = fx if angle_y is None else 0.5 * h / math.tan(0.5 * angle_y)
    K = torch.tensor([[fx, 0.0, w / 2], [0.0, fy, h / 2], [0.0, 0.0, 1.0]], dtype=torch.float32)
    points = colors = None
    if (root / "points3d.ply").is_file():
        points, colors = read_ply_points(root / "points3d.ply")
    return Scene(
        images=images.contiguous(),
        c2w=torch.from_numpy(np.asarray(c2ws, np.float32).reshape(-1, 3, 4)),
        K=K.expand(n, 3, 3).clone(),
        split=split,
        near=2.0,
        far=6.0,
        aabb=torch.tensor([-1.5, -1.5, -1.5, 1.5, 1.5, 1.5]),
        format="blender",
        points=points,
        point_colors=colors,
        meta={"files": [str(f) for f in files], "camera_angle_x": angle_x, "background": background},
    )
