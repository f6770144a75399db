"""COLMAP sparse models (text and binary ``cameras / images / points3D``) + ``images/``.

No third-party COLMAP package: the text and binary formats are parsed here. Poses are converted
from COLMAP's world-to-camera (OpenCV axes) to camera-to-world OpenGL; the world frame is kept.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from raysplat.datasets._io import DatasetError, bounds_from_points, fail, read_images
from raysplat.datasets.scene import Scene

#: model id -> (name, number of parameters), as in COLMAP's ``camera_models.h``.
CAMERA_MODELS = {
    0: ("SIMPLE_PINHOLE", 3),
    1: ("PINHOLE", 4),
    2: ("SIMPLE_RADIAL", 4),
    3: ("RADIAL", 5),
    4: ("OPENCV", 8),
    5: ("OPENCV_FISHEYE", 8),
    6: ("FULL_OPENCV", 12),
    7: ("FOV", 5),
    8: ("SIMPLE_RADIAL_FISHEYE", 4),
    9: ("RADIAL_FISHEYE", 5),
    10: ("THIN_PRISM_FISHEYE", 12),
}
_BY_NAME = {name: (mid, n) for mid, (name, n) in CAMERA_MODELS.items()}
#: the models read as pinhole cameras (distortion kept in meta)
SUPPORTED = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV")


@dataclass
class Camera:
    id: int
    model: str
    width: int
    height: int
    params: list[float]


@dataclass
class Image:
    id: int
    qvec: np.ndarray  # (w, x, y, z) world-to-camera rotation
    tvec: np.ndarray
    camera_id: int
    name: str
    xys: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    point3d_ids: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))


@dataclass
class Model:
    cameras: dict[int, Camera]
    images: dict[int, Image]
    points: np.ndarray  # [P, 3]
    colors: np.ndarray  # [P, 3] uint8
    errors: np.ndarray  # [P]
    point_ids: np.ndarray  # [P]
    tracks: list[np.ndarray]  # per point [L, 2] (image id, point2d index)


def qvec_to_rotmat(q: np.ndarray) -> np.ndarray:
    """Rotation matrix of a (w, x, y, z) quaternion (normalised first)."""
    w, x, y, z = np.asarray(q, np.float64) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * y * y - 2 * z * z, 2 * x * y - 2 * w * z, 2 * x * z + 2 * w * y],
            [2 * x * y + 2 * w * z, 1 - 2 * x * x - 2 * z * z, 2 * y * z - 2 * w * x],
            [2 * x * z - 2 * w * y, 2 * y * z + 2 * w * x, 1 - 2 * x * x - 2 * y * y],
        ]
    )


# ------------------------------------------------------------------------------------- text


def _data_lines(path: Path) -> list[tuple[int, str]]:
    if not path.is_file():
        raise fail(path, "file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise fail(path, f"not a text file ({e})") from None
    return [(i + 1, ln.strip()) for i, ln in enumerate(text.splitlines())]


def _parse(path: Path, lineno: int, tokens: list[str], types: str, what: str):
    if len(tokens) < len(types):
        raise fail(path, f"line {lineno}: {what} needs at least {len(types)} fields, got {len(tokens)}")
    out = []
    for t, ty in zip(tokens, types, strict=False):
        try:
            out.append(int(t) if ty == "i" else float(t) if ty == "f" else t)
        except ValueError:
            raise fail(path, f"line {lineno}: bad {what} field {t!r}") from None
    return out


def read_cameras_text(path: Path) -> dict[int, Camera]:
    cams = {}
    for ln, line in _data_lines(path):
        if not line or line.startswith("#"):
            continue
        tok = line.split()
        cid, model, w, h = _parse(path, ln, tok, "isii", "camera")
        if model not in _BY_NAME:
            raise fail(path, f"line {ln}: unknown camera model {model!r}")
        k = _BY_NAME[model][1]
        if len(tok) != 4 + k:
            raise fail(path, f"line {ln}: camera model {model} needs {k} parameters, got {len(tok) - 4}")
        params = _parse(path, ln, tok[4:], "f" * k, "camera parameter")
        cams[cid] = Camera(cid, model, w, h, params)
    return cams


def read_images_text(path: Path) -> dict[int, Image]:
    """Two lines per image (the second, the 2D points, may be empty), as COLMAP reads them."""
    images = {}
    lines = _data_lines(path)
    i = 0
    while i < len(lines):
        ln, line = lines[i]
        i += 1
        if not line or line.startswith("#"):
            continue
        tok = line.split()
        if len(tok) < 10:
            raise fail(
                path, f"line {ln}: image line needs 10 fields (IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME)"
            )
        vals = _parse(path, ln, tok, "ifffffffi", "image")
        name = " ".join(tok[9:])
        pts = lines[i][1].split() if i < len(lines) else []
        pln = lines[i][0] if i < len(lines) else ln + 1
        i += 1
        if len(pts) % 3:
            raise fail(
                path, f"line {pln}: 2D points must be (X, Y, POINT3D_ID) triples, got {len(pts)} values"
            )
        try:
            arr = np.array(pts, dtype=np.float64).reshape(-1, 3)
        except ValueError:
            raise fail(path, f"line {pln}: 2D points are not numbers") from None
        images[vals[0]] = Image(
            vals[0],
            np.array(vals[1:5]),
            np.array(vals[5:8]),
            vals[8],
            name,
            arr[:, :2],
            arr[:, 2].astype(np.int64),
        )
    return images


def read_points3d_text(path: Path):
    ids, xyz, rgb, err, tracks = [], [], [], [], []
    for ln, line in _data_lines(path):
        if not line or line.startswith("#"):
            continue
        tok = line.split()
        v = _parse(path, ln, tok, "ifffiiif", "point")
        if (len(tok) - 8) % 2:
            raise fail(path, f"line {ln}: track must be (IMAGE_ID, POINT2D_IDX) pairs")
        ids.append(v[0])
        xyz.append(v[1:4])
        rgb.append(v[4:7])
        err.append(v[7])
        tracks.append(
            np.array(_parse(path, ln, tok[8:], "i" * (len(tok) - 8), "track"), np.int64).reshape(-1, 2)
        )
    return (
        np.array(ids, np.int64),
        np.array(xyz, np.float64).reshape(-1, 3),
        np.array(rgb, np.uint8).reshape(-1, 3),
        np.array(err, np.float64),
        tracks,
    )


# ----------------------------------------------------------------------------------- binary


class _Reader:
    """Bounds-checked little-endian reads from a file's bytes."""

    def __init__(self, path: Path):
        if not path.is_file():
            raise fail(path, "file not found")
        self.path = path
        self.data = path.read_bytes()
        self.pos = 0

    def read(self, fmt: str, what: str):
        s = struct.Struct("<" + fmt)
        if self.pos + s.size > len(self.data):
            raise fail(
                self.path,
                f"truncated: needed {s.size} bytes for {what} at offset {self.pos}, "
                f"file has {len(self.data)}",
            )
        out = s.unpack_from(self.data, self.pos)
        self.pos += s.size
        return out

    def array(self, dtype: str, count: int, what: str) -> np.ndarray:
        dt = np.dtype(dtype)
        size = dt.itemsize * count
        if count < 0 or self.pos + size > len(self.data):
            raise fail(
                self.path,
                f"truncated: needed {size} bytes for {what} at offset {self.pos}, file has {len(self.data)}",
            )
        out = np.frombuffer(self.data, dt, count, self.pos)
        self.pos += size
        return out

    def cstring(self, what: str) -> str:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise fail(self.path, f"truncated: unterminated {what} at offset {self.pos}")
        s = self.data[self.pos : end].decode("utf-8", errors="replace")
        self.pos = end + 1
        return s

    def done(self) -> None:
        if self.pos != len(self.data):
            raise fail(
                self.path, f"{len(self.data) - self.pos} unexpected trailing bytes at offset {self.pos}"
            )


def read_cameras_binary(path: Path) -> dict[int, Camera]:
    r = _Reader(path)
    (n,) = r.read("Q", "the camera count")
    cams = {}
    for i in range(n):
        cid, mid, w, h = r.read("iiQQ", f"camera {i}")
        if mid not in CAMERA_MODELS:
            raise fail(path, f"camera {cid}: unknown camera model id {mid}")
        name, k = CAMERA_MODELS[mid]
        cams[cid] = Camera(cid, name, w, h, list(r.read("d" * k, f"camera {cid} parameters")))
    r.done()
    return cams


def read_images_binary(path: Path) -> dict[int, Image]:
    r = _Reader(path)
    (n,) = r.read("Q", "the image count")
    images = {}
    for i in range(n):
        v = r.read("idddddddi", f"image {i}")
        name = r.cstring(f"image {v[0]} name")
        (n2d,) = r.read("Q", f"image {v[0]} point count")
        rec = r.array("<f8,<f8,<i8", n2d, f"image {v[0]} 2D points") if n2d else None
        xys = np.stack([rec["f0"], rec["f1"]], 1) if rec is not None else np.zeros((0, 2))
        ids = rec["f2"].astype(np.int64) if rec is not None else np.zeros(0, np.int64)
        images[v[0]] = Image(v[0], np.array(v[1:5]), np.array(v[5:8]), v[8], name, xys, ids)
    r.done()
    return images


def read_points3d_binary(path: Path):
    r = _Reader(path)
    (n,) = r.read("Q", "the point count")
    ids, xyz, rgb, err, tracks = [], [], [], [], []
    for i in range(n):
        v = r.read("QdddBBBd", f"point {i}")
        (tl,) = r.read("Q", f"point {v[0]} track length")
        tr = r.array("<i4", 2 * tl, f"point {v[0]} track")
        ids.append(v[0])
        xyz.append(v[1:4])
        rgb.append(v[4:7])
        err.append(v[7])
        tracks.append(tr.astype(np.int64).reshape(-1, 2))
    r.done()
    return (
        np.array(ids, np.int64),
        np.array(xyz, np.float64).reshape(-1, 3),
        np.array(rgb, np.uint8).reshape(-1, 3),
        np.array(err, np.float64),
        tracks,
    )


# ----------------------------------------------------------------------------------- loading


def find_model(root: Path) -> Path | None:
    """The sparse model folder of a COLMAP project (``sparse/0``, ``sparse``, ``colmap/sparse/0``
    or the folder itself), or ``None``."""
    for d in (root / "sparse" / "0", root / "sparse", root / "colmap" / "sparse" / "0", root):
        if any((d / f"cameras.{e}").is_file() for e in ("txt", "bin")):
            return d
    return None


def read_model(model_dir: Path, kind: str = "auto") -> Model:
    """Reads ``cameras / images / points3D`` (``kind``: ``"text"``, ``"binary"`` or ``"auto"`` =
    binary when ``cameras.bin`` exists)."""
    if kind not in ("auto", "text", "binary"):
        raise ValueError(f"model must be 'auto', 'text' or 'binary', got {kind!r}")
    if kind == "auto":
        kind = "binary" if (model_dir / "cameras.bin").is_file() else "text"
    if kind == "binary":
        cams = read_cameras_binary(model_dir / "cameras.bin")
        imgs = read_images_binary(model_dir / "images.bin")
        pts = read_points3d_binary(model_dir / "points3D.bin")
    else:
        cams = read_cameras_text(model_dir / "cameras.txt")
        imgs = read_images_text(model_dir / "images.txt")
        pts = read_points3d_text(model_dir / "points3D.txt")
    ids, xyz, rgb, err, tracks = pts
    return Model(cams, imgs, xyz, rgb, err, ids, tracks)


def intrinsics(cam: Camera, source: Path) -> tuple[float, float, float, float, dict]:
    """``(fx, fy, cx, cy, distortion)`` of a supported camera model."""
    p = cam.params
    if cam.model not in SUPPORTED:
        raise fail(
            source,
            f"camera {cam.id}: unsupported camera model {cam.model} (supported: {', '.join(SUPPORTED)})",
        )
    if cam.model == "SIMPLE_PINHOLE":
        return p[0], p[0], p[1], p[2], {}
    if cam.model == "PINHOLE":
        return p[0], p[1], p[2], p[3], {}
    if cam.model == "SIMPLE_RADIAL":
        return p[0], p[0], p[1], p[2], {"k1": p[3]}
    if cam.model == "RADIAL":
        return p[0], p[0], p[1], p[2], {"k1": p[3], "k2": p[4]}
    return p[0], p[1], p[2], p[3], dict(zip(("k1", "k2", "p1", "p2"), p[4:8], strict=True))


def load_colmap(
    path: str | Path, factor: int = 1, holdout: int = 8, model: str = "auto", images: str = "images"
) -> Scene:
    """Loads a COLMAP project: a sparse model (see :func:`find_model`) and its images.

    Args:
        path: the project directory.
        factor: reads ``<images>_<factor>/`` and divides the intrinsics by ``factor``.
        holdout: after sorting by name, every ``holdout``-th image (0, 8, ...) is a test (and
            val) image; 0 keeps all images for training.
        model: ``"auto"`` (binary when ``cameras.bin`` exists), ``"text"`` or ``"binary"``.
        images: the image folder name.

    Camera models SIMPLE_PINHOLE, PINHOLE, SIMPLE_RADIAL, RADIAL and OPENCV give pinhole
    intrinsics from their focal lengths and principal point; distortion is not applied, only kept
    in ``meta["distortion"]``. All images must share one size. Returns a :class:`Scene` with
    ``points`` / ``point_colors`` from ``points3D`` and ``near / far / aabb`` from them. ``meta``:
    ``files``, ``image_ids``, ``camera_ids``, ``distortion``, ``point_errors``, ``model_dir``.
    """
    root = Path(path)
    mdir = find_model(root)
    if mdir is None:
        raise fail(
            root, "no COLMAP model found (looked for sparse/0, sparse, colmap/sparse/0 with cameras.txt/.bin)"
        )
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(f"factor must be a positive int, got {factor!r}")
    m = read_model(mdir, model)
    src_images = mdir / (
        "images.bin" if (mdir / "cameras.bin").is_file() and model != "text" else "images.txt"
    )
    src_cams = src_images.with_name("cameras" + src_images.suffix)
    if not m.images:
        raise fail(src_images, "the model has no images")
    folder = root / (images if factor == 1 else f"{images}_{factor}")
    order = sorted(m.images.values(), key=lambda im: im.name)
    flip = np.diag([1.0, -1.0, -1.0])
    files, c2ws, Ks, dist, sizes = [], [], [], [], set()
    for im in order:
        if im.camera_id not in m.cameras:
            raise fail(src_images, f"image {im.id} ({im.name}) refers to missing camera {im.camera_id}")
        cam = m.cameras[im.camera_id]
        fx, fy, cx, cy, d = intrinsics(cam, src_cams)
        R = qvec_to_rotmat(im.qvec)
        c2w = np.concatenate([R.T @ flip, (-R.T @ im.tvec)[:, None]], 1)
        files.append(folder / im.name)
        c2ws.append(c2w)
        Ks.append([[fx / factor, 0, cx / factor], [0, fy / factor, cy / factor], [0, 0, 1]])
        dist.append({"model": cam.model, **d})
        sizes.add((cam.height // factor, cam.width // factor))
    if len(sizes) > 1:
        raise fail(src_cams, f"cameras have different image sizes (h, w): {sorted(sizes)}")
    imgs = read_images(files, size=sizes.pop())
    n = len(files)
    idx = np.arange(n)
    test = idx[::holdout] if holdout > 0 else idx[:0]
    c2w_t = torch.from_numpy(np.asarray(c2ws, np.float32))
    points = torch.from_numpy(m.points.astype(np.float32)) if len(m.points) else None
    colors = torch.from_numpy(m.colors.astype(np.float32) / 255.0) if len(m.points) else None
    b = bounds_from_points(c2w_t, points)
    if b is None:
        raise DatasetError(f"{mdir}: need at least 4 3D points in front of the cameras to bound the scene")
    near, far, aabb = b
    return Scene(
        images=imgs,
        c2w=c2w_t,
        K=torch.tensor(Ks, dtype=torch.float32),
        split={
            "train": torch.from_numpy(np.setdiff1d(idx, test)),
            "val": torch.from_numpy(test.copy()),
            "test": torch.from_numpy(test.copy()),
        },
        near=near,
        far=far,
        aabb=aabb,
        format="colmap",
        points=points,
        point_colors=colors,
        meta={
            "files": [str(f) for f in files],
            "image_ids": [im.id for im in order],
            "camera_ids": [im.camera_id for im in order],
            "distortion": dist,
            "point_errors": torch.from_numpy(m.errors.astype(np.float32)),
            "model_dir": str(mdir),
        },
    )
