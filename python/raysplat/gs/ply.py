"""Gaussian PLY files in the standard 3DGS layout (readable by common splat viewers).

Per vertex, binary little endian float32: ``x y z nx ny nz f_dc_0..2 f_rest_0..(3(K-1)-1)
opacity scale_0..2 rot_0..3``. ``f_dc`` is SH band 0, ``f_rest`` the higher bands flattened
channel-major (the transposed ``[3, K - 1]`` array, as the original 3DGS export), ``opacity``
is the logit, ``scale_*`` the log-scales and ``rot_*`` the wxyz quaternion (unnormalised).
Normals are written as zeros. Saving and loading round-trips the float32 parameters exactly.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from raysplat.gs.model import GaussianModel

_PLY_TYPES = {
    "char": "i1",
    "int8": "i1",
    "uchar": "u1",
    "uint8": "u1",
    "short": "i2",
    "int16": "i2",
    "ushort": "u2",
    "uint16": "u2",
    "int": "i4",
    "int32": "i4",
    "uint": "u4",
    "uint32": "u4",
    "float": "f4",
    "float32": "f4",
    "double": "f8",
    "float64": "f8",
}


def ply_fields(n_rest: int) -> list[str]:
    """The property names of a 3DGS PLY with ``n_rest`` = 3(K - 1) ``f_rest`` values."""
    return [
        *("x", "y", "z", "nx", "ny", "nz"),
        *(f"f_dc_{i}" for i in range(3)),
        *(f"f_rest_{i}" for i in range(n_rest)),
        "opacity",
        *(f"scale_{i}" for i in range(3)),
        *(f"rot_{i}" for i in range(4)),
    ]


def save_ply(model: GaussianModel, path: str | os.PathLike) -> Path:
    """Writes ``model`` as a binary little-endian 3DGS PLY; returns the path."""
    p = {k: v.detach().cpu().float() for k, v in model.params.items()}
    n = len(model)
    rest = p["shN"].transpose(1, 2).reshape(n, -1)  # [N, 3, K-1] -> channel-major
    cols = [
        p["means"],
        torch.zeros(n, 3),
        p["sh0"].reshape(n, 3),
        rest,
        p["opacities"][:, None],
        p["scales"],
        p["quats"],
    ]
    data = torch.cat(cols, 1).numpy()
    names = ply_fields(rest.shape[1])
    rec = np.empty(n, dtype=[(k, "<f4") for k in names])
    for i, k in enumerate(names):
        rec[k] = data[:, i]
    header = "ply\nformat binary_little_endian 1.0\n" + f"element vertex {n}\n"
    header += "".join(f"property float {k}\n" for k in names) + "end_header\n"
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(rec.tobytes())
    return out


def read_ply_vertices(path: str | os.PathLike) -> np.ndarray:
    """The vertex element of a binary little-endian PLY as a NumPy structured array."""
    path = Path(path)
    with open(path, "rb") as f:
        raw = f.read()
    end = raw.find(b"end_header")
    if not raw.startswith(b"ply") or end < 0:
        raise ValueError(f"{path}: not a PLY file")
    stop = raw.index(b"\n", end) + 1
    lines = raw[:stop].decode("ascii", "replace").splitlines()
    fmt = None
    elements: list[tuple[str, int, list[tuple[str, str]]]] = []
    for line in lines[1:]:
        tok = line.split()
        if not tok or tok[0] in ("comment", "obj_info", "end_header"):
            continue
        if tok[0] == "format":
            fmt = tok[1]
        elif tok[0] == "element":
            elements.append((tok[1], int(tok[2]), []))
        elif tok[0] == "property":
            if not elements:
                raise ValueError(f"{path}: property before any element")
            if tok[1] == "list":
                raise ValueError(f"{path}: list properties are not supported ({line.strip()})")
            if tok[1] not in _PLY_TYPES:
                raise ValueError(f"{path}: unknown property type {tok[1]!r}")
            elements[-1][2].append((tok[2], "<" + _PLY_TYPES[tok[1]]))
    if fmt != "binary_little_endian":
        raise ValueError(f"{path}: only binary_little_endian PLY files are supported, got {fmt}")
    if not elements or elements[0][0] != "vertex":
        raise ValueError(f"{path}: the first element must be 'vertex'")
    _, n, props = elements[0]
    dtype = np.dtype(props)
    if len(raw) - stop < n * dtype.itemsize:
        raise ValueError(f"{path}: truncated ({n} vertices of {dtype.itemsize} bytes expected)")
    return np.frombuffer(raw, dtype=dtype, count=n, offset=stop)


def load_ply(path: str | os.PathLike, device: str | torch.device = "cpu") -> GaussianModel:
    """Reads a 3DGS PLY (as written by :func:`save_ply`, the original 3DGS code, gsplat, ...)."""
    v = read_ply_vertices(path)
    names = set(v.dtype.names or ())
    need = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity"]
    need += [f"scale_{i}" for i in range(3)] + [f"rot_{i}" for i in range(4)]
    missing = [k for k in need if k not in names]
    if missing:
        raise ValueError(f"{path}: not a Gaussian-splat PLY (missing {', '.join(missing)})")
    n_rest = sum(1 for k in names if k.startswith("f_rest_"))
    if n_rest % 3 or any(f"f_rest_{i}" not in names for i in range(n_rest)):
        raise ValueError(f"{path}: f_rest_* must be f_rest_0..f_rest_(3(K-1)-1), got {n_rest} values")
    n = len(v)

    def cols(keys):
        a = np.stack([np.asarray(v[k], dtype=np.float32) for k in keys], 1) if keys else np.zeros((n, 0))
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(device)

    rest = cols([f"f_rest_{i}" for i in range(n_rest)]).reshape(n, 3, n_rest // 3).transpose(1, 2)
    return GaussianModel(
        cols(["x", "y", "z"]),
        cols([f"rot_{i}" for i in range(4)]),
        cols([f"scale_{i}" for i in range(3)]),
        cols(["opacity"])[:, 0],
        cols(["f_dc_0", "f_dc_1", "f_dc_2"])[:, None, :],
        rest.contiguous(),
    )
