"""LLFF forward-facing captures: ``poses_bounds.npy`` + ``images[_<factor>]/`` (NeRF's loader)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from raysplat.datasets._io import fail, frustum_aabb, list_images, read_image, read_images
from raysplat.datasets.scene import Scene


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x)


def view_matrix(z: np.ndarray, up: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """NeRF's ``viewmatrix``: a ``[3, 4]`` camera-to-world with back axis ``z`` and up hint ``up``."""
    z = _normalize(z)
    x = _normalize(np.cross(up, z))
    y = _normalize(np.cross(z, x))
    return np.stack([x, y, z, pos], 1)


def average_pose(c2w: np.ndarray) -> np.ndarray:
    """NeRF's ``poses_avg``: mean centre, summed back and up axes."""
    return view_matrix(c2w[:, :3, 2].sum(0), c2w[:, :3, 1].sum(0), c2w[:, :3, 3].mean(0))


def spiral_path(c2w: np.ndarray, bounds: np.ndarray, n_views: int = 120, n_rots: int = 2, zrate: float = 0.5):
    """NeRF's LLFF spiral render path around the (recentred) cameras ``c2w [N, 3, 4]``."""
    center = average_pose(c2w)
    up = _normalize(c2w[:, :3, 1].sum(0))
    close_depth, inf_depth = bounds.min() * 0.9, bounds.max() * 5.0
    dt = 0.75
    focal = 1.0 / ((1.0 - dt) / close_depth + dt / inf_depth)
    rads = np.append(np.percentile(np.abs(c2w[:, :3, 3]), 90, 0), 1.0)
    out = []
    for theta in np.linspace(0.0, 2.0 * np.pi * n_rots, n_views + 1)[:-1]:
        c = center @ (np.array([np.cos(theta), -np.sin(theta), -np.sin(theta * zrate), 1.0]) * rads)
        z = _normalize(c - center @ np.array([0, 0, -focal, 1.0]))
        out.append(view_matrix(z, up, c))
    return np.stack(out) if out else np.zeros((0, 3, 4))


def load_llff(
    path: str | Path,
    factor: int | None = None,
    bd_factor: float | None = 0.75,
    recenter: bool = True,
    llffhold: int = 8,
    ndc: bool = True,
    n_render: int = 120,
) -> Scene:
    """Loads an LLFF scene the way NeRF's ``load_llff_data`` does.

    Args:
        path: the directory holding ``poses_bounds.npy`` (``N x 17``: a ``3 x 5`` ``[R | t | hwf]``
            pose per image with R's columns down / right / back, then near / far depth bounds)
            and ``images/``, ``images_<factor>/``.
        factor: image downscale; reads ``images_<factor>/`` (``factor=1``: ``images/``). When that
            folder is missing, ``images/`` is downscaled here (box filter). ``None``: the smallest
            of 1, 2, 4, 8, ... that brings the longer full-resolution side to at most 1024 pixels
            (4 for the 4032 x 3024 LLFF captures, 1 for the sample scenes).
        bd_factor: scales the world by ``1 / (min bound * bd_factor)`` so the nearest content sits
            at about ``1 / bd_factor``; ``None`` skips scaling.
        recenter: moves the world so that the average pose becomes the identity.
        llffhold: every ``llffhold``-th image (0, 8, 16, ...) is a test (and val) image; 0 keeps all
            images for training.
        ndc: recorded in ``meta["ndc"]``: a trainer should map rays with
            :func:`raysplat.ndc_rays` (``near = meta["ndc_near"] = 1``) and sample ``t`` in [0, 1].
        n_render: views of the spiral ``render_c2w`` (two rotations).

    Returns:
        A :class:`Scene` (``forward_facing=True``) with OpenGL c2w, ``near / far`` = 0.9 x min and
        max of the scaled bounds, ``aabb`` around the camera frusta between them. ``meta``:
        ``files``, ``bounds [N, 2]``, ``scale``, ``transform`` (4 x 4, maps the file's world into
        the scene's: ``T @ [scale * x, 1]``), ``hwf`` (full resolution), ``factor``, ``ndc``.
    """
    root = Path(path)
    pb = root / "poses_bounds.npy"
    if not pb.is_file():
        raise fail(pb, "file not found")
    try:
        arr = np.load(pb, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise fail(pb, f"cannot read NumPy array ({e})") from None
    if arr.ndim != 2 or arr.shape[1] != 17 or arr.shape[0] == 0:
        raise fail(pb, f"expected an N x 17 array (3x5 pose + 2 bounds per image), got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number):
        raise fail(pb, f"expected a numeric array, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise fail(pb, "contains NaN or infinite values")
    n = arr.shape[0]
    poses = arr[:, :15].reshape(n, 3, 5)
    bounds = arr[:, 15:17].copy()
    if (bounds <= 0).any():
        raise fail(pb, "near / far bounds (columns 15, 16) must be positive")
    hwf = poses[0, :, 4].copy()
    if (hwf <= 0).any():
        raise fail(pb, f"height, width and focal (column 4 of the pose) must be positive, got {hwf.tolist()}")
    if factor is None:
        factor = 1
        while max(hwf[0], hwf[1]) / factor > 1024:
            factor *= 2
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(f"factor must be a positive int or None, got {factor!r}")

    full = root / "images"
    folder = full if factor == 1 else root / f"images_{factor}"
    resized = False
    if folder.is_dir():
        files = list_images(folder)
    elif full.is_dir():
        files, resized = list_images(full), True
    else:
        raise fail(folder, "image folder not found")
    if len(files) != n:
        raise fail(folder if not resized else full, f"holds {len(files)} images but {pb.name} has {n} poses")
    if resized:
        from PIL import Image

        first = read_image(files[0])
        size = (first.shape[1] // factor, first.shape[0] // factor)
        imgs = []
        for f in files:
            img = read_image(f)
            if img.shape != first.shape:
                raise fail(
                    f,
                    f"image is {img.shape[1]}x{img.shape[0]} (WxH) but "
                    f"{first.shape[1]}x{first.shape[0]} was expected (inconsistent image sizes)",
                )
            im = Image.fromarray(np.round(img * 255).astype(np.uint8)).resize(size, Image.Resampling.BOX)
            imgs.append(np.asarray(im, np.float32) / 255.0)
        images = torch.from_numpy(np.stack(imgs))
    else:
        images = read_images(files)
    h, w = images.shape[1:3]
    # intrinsics: hwf is of the full-resolution images; scale to the loaded ones
    fx = hwf[2] * w / hwf[1]
    fy = hwf[2] * h / hwf[0]
    # down, right, back -> right, up, back (OpenGL)
    c2w = np.concatenate([poses[:, :, 1:2], -poses[:, :, 0:1], poses[:, :, 2:4]], 2)
    scale = 1.0 if bd_factor is None else 1.0 / (bounds.min() * bd_factor)
    c2w[:, :, 3] *= scale
    bounds *= scale
    transform = np.diag([scale, scale, scale, 1.0])
    if recenter:
        avg = np.eye(4)
        avg[:3] = average_pose(c2w)
        inv = np.linalg.inv(avg)
        full_c2w = np.tile(np.eye(4), (n, 1, 1))
        full_c2w[:, :3] = c2w
        c2w = (inv @ full_c2w)[:, :3]
        transform = inv @ transform
    render = spiral_path(c2w, bounds, n_render)
    idx = np.arange(n)
    test = idx[::llffhold] if llffhold > 0 else idx[:0]
    train = np.setdiff1d(idx, test)
    K = torch.tensor([[fx, 0.0, w / 2], [0.0, fy, h / 2], [0.0, 0.0, 1.0]], dtype=torch.float32).expand(
        n, 3, 3
    )
    near, far = float(bounds.min() * 0.9), float(bounds.max())
    c2w_t = torch.from_numpy(c2w.astype(np.float32))
    return Scene(
        images=images,
        c2w=c2w_t,
        K=K.clone(),
        split={
            "train": torch.from_numpy(train),
            "val": torch.from_numpy(test),
            "test": torch.from_numpy(test.copy()),
        },
        near=near,
        far=far,
        aabb=frustum_aabb(c2w_t, K, w, h, near, far),
        format="llff",
        forward_facing=True,
        render_c2w=torch.from_numpy(render.astype(np.float32)),
        meta={
            "files": [str(f) for f in files],
            "bounds": torch.from_numpy(bounds.astype(np.float32)),
            "scale": float(scale),
            "transform": torch.from_numpy(transform),
            "hwf": [float(x) for x in hwf],
            "factor": factor,
            "resized": resized,
            "ndc": bool(ndc),
            "ndc_near": 1.0,
        },
    )
