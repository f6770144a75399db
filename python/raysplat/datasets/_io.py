"""Shared pieces of the dataset loaders: the error type, JSON / image / PLY reading, bounds."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch


class DatasetError(ValueError):
    """A dataset on disk is missing or malformed; the message names the file and the problem."""


def fail(path: Path | str, problem: str) -> DatasetError:
    """A :class:`DatasetError` ``"<path>: <problem>"`` (to ``raise``)."""
    return DatasetError(f"{path}: {problem}")


def read_json(path: Path) -> dict:
    """Reads a JSON object, raising :class:`DatasetError` when absent or unparsable."""
    if not path.is_file():
        raise fail(path, "file not found")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise fail(path, f"not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise fail(path, f"expected a JSON object at the top level, got {type(data).__name__}")
    return data


def key(path: Path, obj: dict, name: str, where: str = ""):
    """``obj[name]``, or a :class:`DatasetError` naming the missing key (and ``where`` it was)."""
    if not isinstance(obj, dict) or name not in obj:
        raise fail(path, f"missing key {name!r}{' in ' + where if where else ''}")
    return obj[name]


def number(path: Path, value: object, what: str) -> float:
    """A finite float, or a :class:`DatasetError`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise fail(path, f"{what} must be a finite number, got {value!r}")
    return float(value)


def matrix(path: Path, value: object, shapes: Sequence[tuple[int, int]], what: str) -> np.ndarray:
    """A finite float64 matrix of one of ``shapes``, or a :class:`DatasetError`."""
    try:
        m = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise fail(path, f"{what} must be a numeric matrix, got {value!r:.80}") from None
    if m.shape not in shapes:
        want = " or ".join(f"{r}x{c}" for r, c in shapes)
        raise fail(path, f"{what} must be a {want} matrix, got shape {m.shape}")
    if not np.isfinite(m).all():
        raise fail(path, f"{what} contains NaN or infinite values")
    return m


def read_image(path: Path, rgba: bool = False) -> np.ndarray:
    """Reads an image as float32 ``[H, W, 3]`` (or ``[H, W, 4]`` with ``rgba``; opaque alpha when the
    file has none) in [0, 1]."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise fail(path, "image file not found")
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I"):
                arr = np.asarray(im, dtype=np.float32) / 65535.0
                arr = np.repeat(arr[..., None], 3, -1)
                if rgba:
                    arr = np.concatenate([arr, np.ones_like(arr[..., :1])], -1)
                return arr
            im = im.convert("RGBA" if rgba else "RGB")
            return np.asarray(im, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as e:
        raise fail(path, f"cannot read image ({e})") from None


def read_images(
    paths: Sequence[Path], rgba: bool = False, size: tuple[int, int] | None = None
) -> torch.Tensor:
    """Reads images of one common size ``(H, W)`` (``size`` or the first image's) into
    ``[N, H, W, C]`` float32; a different size raises :class:`DatasetError` naming the file."""
    if not paths:
        return torch.zeros((0, *(size or (0, 0)), 4 if rgba else 3), dtype=torch.float32)
    out = None
    for i, p in enumerate(paths):
        img = read_image(p, rgba)
        if size is None:
            size = img.shape[:2]
        if img.shape[:2] != tuple(size):
            h, w = size
            raise fail(
                p,
                f"image is {img.shape[1]}x{img.shape[0]} (WxH) but {w}x{h} was expected "
                f"(inconsistent image sizes)",
            )
        if out is None:
            out = np.empty((len(paths), *img.shape), dtype=np.float32)
        out[i] = img
    return torch.from_numpy(out)


def image_file(base: Path, name: str) -> Path:
    """Resolves an image path given with or without its extension (Blender's ``./train/r_0``)."""
    p = (base / name).resolve() if not Path(name).is_absolute() else Path(name)
    if p.is_file():
        return p
    for ext in (".png", ".PNG", ".jpg", ".JPG", ".jpeg", ".JPEG"):
        q = p.with_name(p.name + ext)
        if q.is_file():
            return q
    return p.with_name(p.name + ".png") if not p.suffix else p


def list_images(folder: Path) -> list[Path]:
    """Image files of a folder, sorted by name."""
    exts = {".png", ".jpg", ".jpeg"}
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in exts and p.is_file())


def read_ply_points(path: Path) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The vertices ``[P, 3]`` and colours ``[P, 3]`` in [0, 1] (or ``None``) of a PLY file."""
    import trimesh

    if not path.is_file():
        raise fail(path, "point-cloud file not found")
    try:
        geom = trimesh.load(str(path), process=False)
    except Exception as e:  # noqa: BLE001 - trimesh raises many types for bad files
        raise fail(path, f"cannot read PLY ({type(e).__name__}: {e})") from None
    verts = np.asarray(getattr(geom, "vertices", np.zeros((0, 3))), dtype=np.float32).reshape(-1, 3)
    colors = None
    c = getattr(geom, "colors", None)
    if c is None or len(c) == 0:
        visual = getattr(geom, "visual", None)
        c = getattr(visual, "vertex_colors", None) if visual is not None else None
    if c is not None and len(c) == len(verts) and len(verts) > 0:
        colors = torch.from_numpy(np.asarray(c, dtype=np.float32)[:, :3] / 255.0)
    return torch.from_numpy(verts), colors


def write_ply_points(path: Path, points: np.ndarray, colors: np.ndarray) -> None:
    """Writes a binary PLY point cloud (3DGS layout: x y z nx ny nz red green blue)."""
    n = len(points)
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"element vertex {n}\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property float nx\nproperty float ny\nproperty float nz\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
    )
    rec = np.zeros(
        n,
        dtype=[(k, "<f4") for k in ("x", "y", "z", "nx", "ny", "nz")] + [(k, "u1") for k in ("r", "g", "b")],
    )
    for k, col in zip("xyz", np.asarray(points, np.float32).T, strict=True):
        rec[k] = col
    rgb = np.clip(np.round(np.asarray(colors, np.float64) * 255), 0, 255).astype(np.uint8)
    for k, col in zip("rgb", rgb.T, strict=True):
        rec[k] = col
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(rec.tobytes())


def frustum_aabb(c2w: torch.Tensor, K: torch.Tensor, width: int, height: int, near: float, far: float):
    """The ``[6]`` box holding every camera frustum between depths ``near`` and ``far``."""
    if c2w.shape[0] == 0:
        return torch.tensor([-1.0, -1.0, -1.0, 1.0, 1.0, 1.0])
    px = torch.tensor([[0.0, 0.0], [width, 0.0], [0.0, height], [width, height]], dtype=torch.float64)
    Kd = K.double()
    x = (px[None, :, 0] - Kd[:, 0, 2:3]) / Kd[:, 0, 0:1]
    y = -(px[None, :, 1] - Kd[:, 1, 2:3]) / Kd[:, 1, 1:2]
    dirs = torch.stack([x, y, -torch.ones_like(x)], -1)  # [N, 4, 3] camera space, depth 1
    pts = torch.cat([dirs * near, dirs * far], 1)  # [N, 8, 3]
    world = pts @ c2w[:, :3, :3].double().transpose(1, 2) + c2w[:, None, :3, 3].double()
    flat = world.reshape(-1, 3)
    return torch.cat([flat.min(0).values, flat.max(0).values]).float()


def bounds_from_points(
    c2w: torch.Tensor, points: torch.Tensor | None
) -> tuple[float, float, torch.Tensor] | None:
    """``(near, far, aabb)`` from sparse points seen by OpenGL cameras: 1st / 99th depth
    percentiles (with margins) and the 1st-99th percentile box of the points padded by 10 %."""
    if points is None or len(points) < 4 or c2w.shape[0] == 0:
        return None
    p = points.double()
    R, t = c2w[:, :3, :3].double(), c2w[:, :3, 3].double()
    cam = torch.einsum("nji,npj->npi", R, p[None] - t[:, None])  # world -> camera (R^T (p - t))
    z = -cam[..., 2]
    z = z[z > 1e-6]
    if z.numel() == 0:
        return None
    lo, hi = torch.quantile(z, 0.01).item(), torch.quantile(z, 0.99).item()
    near, far = max(0.9 * lo, 1e-3), 1.2 * hi
    q = torch.quantile(p, torch.tensor([0.01, 0.99], dtype=torch.float64), dim=0)
    pad = 0.1 * (q[1] - q[0]).clamp(min=1e-3)
    aabb = torch.cat([q[0] - pad, q[1] + pad]).float()
    return float(near), float(far), aabb
