"""nerfstudio captures: ``transforms.json`` (shared or per-frame intrinsics) + ``images/``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from raysplat.datasets._io import (
    bounds_from_points,
    fail,
    frustum_aabb,
    image_file,
    key,
    matrix,
    number,
    read_images,
    read_json,
    read_ply_points,
)
from raysplat.datasets.scene import Scene

#: camera models read as pinhole cameras (their distortion coefficients are kept in meta)
CAMERA_MODELS = ("PINHOLE", "SIMPLE_PINHOLE", "OPENCV")
_DISTORTION = ("k1", "k2", "k3", "k4", "p1", "p2")


def _norm(p: str) -> str:
    return p[2:] if p.startswith("./") else p


def load_nerfstudio(path: str | Path, holdout: int = 8, downscale: int = 1) -> Scene:
    """Loads a nerfstudio ``transforms.json`` scene.

    Args:
        path: the directory holding ``transforms.json`` (or the JSON file itself).
        holdout: without ``train_filenames`` / ``val_filenames`` / ``test_filenames`` lists in the
            file, every ``holdout``-th frame (0, 8, ...) after sorting by file name is a test (and
            val) frame; 0 keeps all frames for training.
        downscale: reads ``images_<downscale>/`` instead of ``images/`` (intrinsics scaled).

    Intrinsics ``fl_x`` (``fl_y`` defaults to it), ``cx``, ``cy``, ``w``, ``h`` come from the top
    level or the frame (a frame's values override); ``camera_model`` must be one of
    :data:`CAMERA_MODELS` (default ``OPENCV``); distortion ``k1..k4, p1, p2`` is not applied, only
    kept in ``meta["distortion"]``. ``transform_matrix`` is an OpenGL camera-to-world. Points come
    from ``ply_file_path`` when given; ``near / far / aabb`` from them (else from the cameras).
    """
    root = Path(path)
    jp = root if root.suffix == ".json" else root / "transforms.json"
    root = jp.parent
    data = read_json(jp)
    frames = key(jp, data, "frames")
    if not isinstance(frames, list) or not frames:
        raise fail(jp, "'frames' must be a non-empty list")
    if isinstance(downscale, bool) or not isinstance(downscale, int) or downscale < 1:
        raise ValueError(f"downscale must be a positive int, got {downscale!r}")
    order = sorted(
        range(len(frames)),
        key=lambda i: str(frames[i].get("file_path", "")) if isinstance(frames[i], dict) else "",
    )
    names, files, c2ws, Ks, dist, sizes = [], [], [], [], [], []
    for i in order:
        fr = frames[i]
        where = f"frames[{i}]"
        fp = key(jp, fr, "file_path", where)
        if not isinstance(fp, str):
            raise fail(jp, f"{where}.file_path must be a string, got {fp!r}")

        def get(name, default=None, fr=fr, where=where):
            if name in fr:
                return number(jp, fr[name], f"{where}.{name}")
            if name in data:
                return number(jp, data[name], name)
            if default is not None:
                return default
            raise fail(jp, f"missing key {name!r} (neither at the top level nor in {where})")

        model = fr.get("camera_model", data.get("camera_model", "OPENCV"))
        if model not in CAMERA_MODELS:
            raise fail(
                jp, f"unsupported camera_model {model!r} in {where} (supported: {', '.join(CAMERA_MODELS)})"
            )
        fx = get("fl_x")
        fy = get("fl_y", fx)
        w, h = get("w"), get("h")
        cx, cy = get("cx", w / 2), get("cy", h / 2)
        m = matrix(jp, key(jp, fr, "transform_matrix", where), ((4, 4), (3, 4)), f"{where}.transform_matrix")
        rel = _norm(fp)
        if downscale > 1:
            parts = Path(rel).parts
            rel = str(Path(f"{parts[0]}_{downscale}", *parts[1:])) if len(parts) > 1 else rel
        names.append(_norm(fp))
        files.append(image_file(root, rel))
        c2ws.append(m[:3, :4])
        Ks.append([[fx / downscale, 0, cx / downscale], [0, fy / downscale, cy / downscale], [0, 0, 1]])
        sizes.append((round(h / downscale), round(w / downscale)))
        dist.append({"model": model, **{k: get(k, 0.0) for k in _DISTORTION}})
    if len(set(sizes)) > 1:
        raise fail(jp, f"frames declare different image sizes (h, w): {sorted(set(sizes))}")
    images = read_images(files, size=sizes[0])
    n = len(files)
    idx = np.arange(n)
    split: dict[str, torch.Tensor] = {}
    if any(f"{s}_filenames" in data for s in ("train", "val", "test")):
        pos = {nm: j for j, nm in enumerate(names)}
        for s in ("train", "val", "test"):
            lst = data.get(f"{s}_filenames", [])
            if not isinstance(lst, list):
                raise fail(jp, f"'{s}_filenames' must be a list of file paths")
            sel = []
            for nm in lst:
                if not isinstance(nm, str) or _norm(nm) not in pos:
                    raise fail(jp, f"'{s}_filenames' names {nm!r}, which is not a frame's file_path")
                sel.append(pos[_norm(nm)])
            split[s] = torch.tensor(sorted(sel), dtype=torch.int64)
    else:
        test = idx[::holdout] if holdout > 0 else idx[:0]
        split = {
            "train": torch.from_numpy(np.setdiff1d(idx, test)),
            "val": torch.from_numpy(test.copy()),
            "test": torch.from_numpy(test.copy()),
        }
    c2w = torch.from_numpy(np.asarray(c2ws, np.float32))
    K = torch.tensor(Ks, dtype=torch.float32)
    points = colors = None
    if "ply_file_path" in data:
        ply = data["ply_file_path"]
        if not isinstance(ply, str):
            raise fail(jp, f"'ply_file_path' must be a string, got {ply!r}")
        points, colors = read_ply_points(root / ply)
    b = bounds_from_points(c2w, points)
    if b is None:
        centres = c2w[:, :, 3]
        extent = float((centres.max(0).values - centres.min(0).values).norm()) or 1.0
        near, far = 0.01 * extent, 2.0 * extent
        aabb = frustum_aabb(c2w, K, images.shape[2], images.shape[1], near, far)
    else:
        near, far, aabb = b
    return Scene(
        images=images,
        c2w=c2w,
        K=K,
        split=split,
        near=near,
        far=far,
        aabb=aabb,
        format="nerfstudio",
        points=points,
        point_colors=colors,
        meta={"files": [str(f) for f in files], "distortion": dist},
    )
