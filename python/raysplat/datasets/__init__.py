"""Datasets: the :class:`Scene` representation, loaders and the sample-scene generator.

``load(path)`` reads NeRF-Blender, LLFF, nerfstudio and COLMAP scenes into one :class:`Scene`;
``sample_scene(format)`` returns a cached procedurally generated scene in any of those layouts
(``make_scene`` writes one anywhere). Malformed data raises :class:`DatasetError`.
"""

from __future__ import annotations

from pathlib import Path

from raysplat.datasets._io import DatasetError
from raysplat.datasets.blender import load_blender
from raysplat.datasets.colmap import find_model, load_colmap
from raysplat.datasets.generate import FORMATS, make_scene, sample_scene
from raysplat.datasets.llff import load_llff
from raysplat.datasets.nerfstudio import load_nerfstudio
from raysplat.datasets.scene import Scene

LOADERS = {"blender": load_blender, "llff": load_llff, "nerfstudio": load_nerfstudio, "colmap": load_colmap}


def detect_format(path: str | Path) -> str:
    """The format of the dataset at ``path``: ``transforms_train.json`` -> blender,
    ``transforms.json`` -> nerfstudio, ``poses_bounds.npy`` -> llff, a COLMAP sparse model ->
    colmap (checked in that order). Raises :class:`DatasetError` when none matches."""
    p = Path(path)
    if not p.exists():
        raise DatasetError(f"{p}: no such file or directory")
    if p.is_file():
        by_name = {
            "transforms_train.json": "blender",
            "transforms.json": "nerfstudio",
            "poses_bounds.npy": "llff",
        }
        if p.name in by_name:
            return by_name[p.name]
        p = p.parent
    if (p / "transforms_train.json").is_file():
        return "blender"
    if (p / "transforms.json").is_file():
        return "nerfstudio"
    if (p / "poses_bounds.npy").is_file():
        return "llff"
    if find_model(p) is not None:
        return "colmap"
    raise DatasetError(
        f"{p}: cannot detect the dataset format (looked for transforms_train.json, transforms.json, "
        "poses_bounds.npy and a COLMAP sparse model)"
    )


def load(path: str | Path, format: str | None = None, **options) -> Scene:
    """Loads a dataset into a :class:`Scene`.

    Args:
        path: the dataset directory (or its main file).
        format: ``"blender"``, ``"llff"``, ``"nerfstudio"``, ``"colmap"`` or ``None`` to detect it
            (:func:`detect_format`).
        **options: passed to the format's loader (:func:`load_blender`, :func:`load_llff`,
            :func:`load_nerfstudio`, :func:`load_colmap`), e.g. ``background="random"``,
            ``factor=8``.

    Raises:
        DatasetError: missing or malformed files (the message names the file and the problem).
        ValueError: an unknown ``format`` or a bad option value.
    """
    if format is None:
        format = detect_format(path)
    if format not in LOADERS:
        raise ValueError(f"format must be one of {', '.join(map(repr, LOADERS))} or None, got {format!r}")
    p = Path(path)
    if not p.exists():
        raise DatasetError(f"{p}: no such file or directory")
    if p.is_file() and format != "nerfstudio":
        p = p.parent
    return LOADERS[format](p, **options)


__all__ = [
    "FORMATS",
    "DatasetError",
    "Scene",
    "detect_format",
    "load",
    "load_blender",
    "load_colmap",
    "load_llff",
    "load_nerfstudio",
    "make_scene",
    "sample_scene",
]
