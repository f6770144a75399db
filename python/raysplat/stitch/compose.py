"""Composition of two 3DGS models: selection, rigid transforms (with SH rotation), merge, boundary.

Selections (:func:`parse_selection`):

* ``box:xmin,ymin,zmin,xmax,ymax,zmax`` — an axis-aligned box (bounds inclusive);
* ``sphere:cx,cy,cz,r`` — a ball (``|x - c| <= r``);
* ``obox:cx,cy,cz,hx,hy,hz,qw,qx,qy,qz`` — an oriented box: centre, half-extents along its own
  axes, and the wxyz quaternion rotating the box's axes into the world
  (``|R^T (x - c)| <= h`` per axis);
* ``all`` — every Gaussian.

Transforms (:class:`Similarity`): ``x -> s R x + t`` with a rotation ``R``, a uniform scale
``s > 0`` and a translation ``t``. A Gaussian ``(mu, R_g, S)`` maps to ``(s R mu + t, R R_g, s S)``:
the quaternion is left-multiplied by ``R``'s quaternion (Hamilton product, wxyz), the log-scales
gain ``log s``. View-dependent colour ``f(d) = sum_lm c_lm Y_lm(d)`` (``d`` the unit direction from
the camera to the Gaussian) must become ``f'(d') = f(R^T d')``; band ``l`` transforms by a
``(2l+1) x (2l+1)`` matrix ``D_l`` with ``Y_l(R^T d) = Y_l(d) D_l`` for every unit ``d``, so
``c'_l = D_l c_l``. We obtain ``D_l`` exactly (to float64 round-off) by least squares on 64 fixed
directions (any set of >= 2l+1 directions in general position determines it, since the band is
closed under rotation); this is the Wigner-D matrix in the real 3DGS basis, order and signs.
Band 0 is invariant. Opacities are unchanged.

Boundary (algorithms.md §4.5, after the CVPR 2025 paper's summary): a target Gaussian ``a`` is a
boundary point when the mean distance to its ``K`` nearest SOURCE centres (after the transform) is
below ``beta * L`` and its opacity exceeds ``tau``. ``L`` (our choice, the sources say "size of the
combined object"): the diagonal of the 1 %..99 % quantile box of the composite's centres, robust
to floaters. Defaults ``K = 8`` (unstated in the sources; ours), ``beta = 0.05``, ``tau = 0.95``.
The query is :func:`raysplat.knn` (a parallel Rust kd-tree on CPU).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from raysplat.gs.model import GaussianModel
from raysplat.gs.ply import load_ply
from raysplat.knn import knn
from raysplat.reference.splat import sh_basis

#: labels of the merged model
TARGET, SOURCE = 0, 1


class StitchError(ValueError):
    """An input that cannot be stitched (empty selection, no boundary, bad model...)."""


# ------------------------------------------------------------------------------------ models


def check_model(model: GaussianModel, name: str) -> GaussianModel:
    """``model`` if every parameter is finite and it has Gaussians, else a ``StitchError`` naming
    ``name`` and the offending parameter."""
    if len(model) == 0:
        raise StitchError(f"{name}: the model has no Gaussians")
    for key, v in model.params.items():
        bad = ~torch.isfinite(v.detach())
        if bad.any():
            rows = bad.reshape(len(model), -1).any(1).nonzero()[:, 0]
            raise StitchError(
                f"{name}: {key} holds NaN or infinite values at {len(rows)} Gaussian(s) "
                f"(first: {int(rows[0])})"
            )
    return model


def load_model(src: str | os.PathLike | GaussianModel, name: str) -> GaussianModel:
    """A checked :class:`GaussianModel` from a 3DGS PLY path or a model (copied, on the CPU)."""
    if isinstance(src, GaussianModel):
        m = clone_model(src)
    else:
        p = Path(src)
        if not p.is_file():
            raise FileNotFoundError(f"{name}: {p}: no such PLY file")
        try:
            m = load_ply(p)
        except ValueError as e:
            raise StitchError(f"{name}: {e}") from e
    return check_model(m, name)


def clone_model(m: GaussianModel, index: torch.Tensor | None = None) -> GaussianModel:
    """A detached CPU copy of ``m`` (rows ``index`` only, when given)."""
    p = {k: v.detach().cpu() for k, v in m.params.items()}
    if index is not None:
        p = {k: v[index] for k, v in p.items()}
    return GaussianModel(p["means"], p["quats"], p["scales"], p["opacities"], p["sh0"], p["shN"])


def pad_sh(m: GaussianModel, degree: int) -> GaussianModel:
    """``m`` with SH degree raised to ``degree`` (new coefficients zero: same colours)."""
    if degree < m.sh_degree:
        raise ValueError(f"degree must be >= the model's SH degree {m.sh_degree}, got {degree}")
    p = {k: v.detach().cpu() for k, v in m.params.items()}
    extra = (degree + 1) ** 2 - 1 - p["shN"].shape[1]
    shn = torch.cat([p["shN"], p["shN"].new_zeros(len(m), extra, 3)], 1)
    return GaussianModel(p["means"], p["quats"], p["scales"], p["opacities"], p["sh0"], shn)


def merge(target: GaussianModel, source: GaussianModel) -> tuple[GaussianModel, torch.Tensor]:
    """One model holding ``target`` then ``source`` (SH degrees padded to the larger) and the
    ``[N]`` uint8 labels (:data:`TARGET` = 0, :data:`SOURCE` = 1)."""
    d = max(target.sh_degree, source.sh_degree)
    a, b = pad_sh(target, d), pad_sh(source, d)
    p = {k: torch.cat([a.params[k].detach(), b.params[k].detach()]) for k in a.params}
    labels = torch.cat([torch.zeros(len(a), dtype=torch.uint8), torch.ones(len(b), dtype=torch.uint8)])
    return GaussianModel(p["means"], p["quats"], p["scales"], p["opacities"], p["sh0"], p["shN"]), labels


# --------------------------------------------------------------------------------- selection


def _floats(text: str, n: int, what: str) -> list[float]:
    try:
        vals = [float(x) for x in text.split(",")]
    except ValueError as e:
        raise ValueError(f"{what}: expected {n} comma-separated numbers, got {text!r}") from e
    if len(vals) != n:
        raise ValueError(f"{what}: expected {n} comma-separated numbers, got {len(vals)}")
    if not all(math.isfinite(v) for v in vals):
        raise ValueError(f"{what}: numbers must be finite, got {text!r}")
    return vals


@dataclass(frozen=True)
class Selection:
    """A region of space: ``kind`` in {"all", "box", "sphere", "obox"} and its numbers."""

    kind: str
    values: tuple[float, ...] = ()

    def mask(self, points: torch.Tensor) -> torch.Tensor:
        """``[N]`` bool: which ``points`` [N, 3] lie inside."""
        x = points.detach().double()
        v = torch.tensor(self.values, dtype=torch.float64)
        if self.kind == "all":
            return torch.ones(len(x), dtype=torch.bool)
        if self.kind == "box":
            return ((x >= v[:3]) & (x <= v[3:])).all(1)
        if self.kind == "sphere":
            return (x - v[:3]).norm(dim=1) <= v[3]
        if self.kind == "obox":
            rot = quat_to_matrix(v[6:10])
            local = (x - v[:3]) @ rot  # R^T (x - c) for each row
            return (local.abs() <= v[3:6]).all(1)
        raise ValueError(f"selection kind must be all, box, sphere or obox, got {self.kind!r}")


def parse_selection(text: str | Selection | None) -> Selection:
    """A :class:`Selection` from ``box:...``, ``sphere:...``, ``obox:...`` or ``all`` (module doc)."""
    if text is None:
        return Selection("all")
    if isinstance(text, Selection):
        return text
    kind, _, rest = text.strip().partition(":")
    kind = kind.lower()
    if kind == "all" and not rest:
        return Selection("all")
    if kind == "box":
        v = _floats(rest, 6, "selection box:xmin,ymin,zmin,xmax,ymax,zmax")
        if not all(v[i] <= v[i + 3] for i in range(3)):
            raise ValueError(f"selection box: min must be <= max on every axis, got {rest!r}")
        return Selection("box", tuple(v))
    if kind == "sphere":
        v = _floats(rest, 4, "selection sphere:cx,cy,cz,r")
        if v[3] < 0:
            raise ValueError(f"selection sphere: radius must be >= 0, got {v[3]}")
        return Selection("sphere", tuple(v))
    if kind == "obox":
        v = _floats(rest, 10, "selection obox:cx,cy,cz,hx,hy,hz,qw,qx,qy,qz")
        if min(v[3:6]) < 0:
            raise ValueError("selection obox: half-extents must be >= 0")
        q = np.asarray(v[6:10])
        if np.linalg.norm(q) < 1e-12:
            raise ValueError("selection obox: the quaternion must not be zero")
        return Selection("obox", (*v[:6], *(q / np.linalg.norm(q)).tolist()))
    raise ValueError(f"selection must be box:..., sphere:..., obox:... or all, got {text!r}")


# -------------------------------------------------------------------------------- transforms


def quat_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``[..., 3, 3]`` of wxyz quaternions ``[..., 4]`` (normalised first)."""
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]  # fmt: skip
    return torch.stack(rows, -1).reshape(*q.shape[:-1], 3, 3)


def matrix_to_quat(r: torch.Tensor) -> torch.Tensor:
    """The wxyz unit quaternion (w >= 0) of a rotation matrix ``[3, 3]`` (Shepperd's method)."""
    r = r.double()
    tr = float(r.trace())
    m = r.tolist()
    if tr > 0:
        s = math.sqrt(tr + 1.0) * 2
        q = [0.25 * s, (m[2][1] - m[1][2]) / s, (m[0][2] - m[2][0]) / s, (m[1][0] - m[0][1]) / s]
    elif m[0][0] > m[1][1] and m[0][0] > m[2][2]:
        s = math.sqrt(1.0 + m[0][0] - m[1][1] - m[2][2]) * 2
        q = [(m[2][1] - m[1][2]) / s, 0.25 * s, (m[0][1] + m[1][0]) / s, (m[0][2] + m[2][0]) / s]
    elif m[1][1] > m[2][2]:
        s = math.sqrt(1.0 + m[1][1] - m[0][0] - m[2][2]) * 2
        q = [(m[0][2] - m[2][0]) / s, (m[0][1] + m[1][0]) / s, 0.25 * s, (m[1][2] + m[2][1]) / s]
    else:
        s = math.sqrt(1.0 + m[2][2] - m[0][0] - m[1][1]) * 2
        q = [(m[1][0] - m[0][1]) / s, (m[0][2] + m[2][0]) / s, (m[1][2] + m[2][1]) / s, 0.25 * s]
    t = torch.tensor(q, dtype=torch.float64)
    t = t / t.norm()
    return -t if t[0] < 0 else t


def quat_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product ``a * b`` of wxyz quaternions (broadcast)."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        -1,
    )


def _euler_xyz(deg: tuple[float, float, float]) -> torch.Tensor:
    rx, ry, rz = (math.radians(a) for a in deg)
    cx, sx, cy, sy, cz, sz = (
        math.cos(rx),
        math.sin(rx),
        math.cos(ry),
        math.sin(ry),
        math.cos(rz),
        math.sin(rz),
    )
    mx = torch.tensor([[1, 0, 0], [0, cx, -sx], [0, sx, cx]], dtype=torch.float64)
    my = torch.tensor([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]], dtype=torch.float64)
    mz = torch.tensor([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]], dtype=torch.float64)
    return mz @ my @ mx


@dataclass(frozen=True)
class Similarity:
    """``x -> scale * rotation @ x + translation`` (rotation ``[3, 3]`` float64, proper)."""

    rotation: torch.Tensor
    translation: torch.Tensor
    scale: float = 1.0

    @classmethod
    def identity(cls) -> Similarity:
        return cls(torch.eye(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64), 1.0)

    @classmethod
    def from_parts(
        cls,
        translate: tuple[float, float, float] = (0.0, 0.0, 0.0),
        rotate_deg: tuple[float, float, float] = (0.0, 0.0, 0.0),
        scale: float = 1.0,
    ) -> Similarity:
        """Rotation by the XYZ Euler angles ``rotate_deg`` (``R = Rz Ry Rx``, degrees), then the
        uniform ``scale``, then ``translate``."""
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be a finite number > 0, got {scale}")
        t = torch.tensor(translate, dtype=torch.float64)
        if t.shape != (3,) or not torch.isfinite(t).all():
            raise ValueError(f"translate must be 3 finite numbers, got {translate}")
        if len(rotate_deg) != 3 or not all(math.isfinite(a) for a in rotate_deg):
            raise ValueError(f"rotate must be 3 finite angles in degrees, got {rotate_deg}")
        return cls(_euler_xyz(tuple(rotate_deg)), t, float(scale))

    @classmethod
    def from_matrix(cls, values) -> Similarity:
        """From 12 (row-major 3x4) or 16 (row-major 4x4) numbers ``[sR | t]``; the 3x3 block must
        be a rotation times a uniform scale > 0 (tolerance 1e-4 relative)."""
        v = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
        if v.numel() not in (12, 16):
            raise ValueError(f"transform must have 12 or 16 numbers (3x4 or 4x4 row-major), got {v.numel()}")
        if not torch.isfinite(v).all():
            raise ValueError("transform: numbers must be finite")
        m = v.reshape(-1, 4)
        if v.numel() == 16 and not torch.allclose(m[3], torch.tensor([0, 0, 0, 1.0], dtype=torch.float64)):
            raise ValueError(f"transform: the last row of a 4x4 matrix must be 0,0,0,1, got {m[3].tolist()}")
        a, t = m[:3, :3], m[:3, 3]
        det = float(torch.linalg.det(a))
        if det <= 0:
            raise ValueError(
                f"transform: the 3x3 block must be a rotation times a scale > 0 (det = {det:.4g})"
            )
        s = det ** (1 / 3)
        r = a / s
        if not torch.allclose(r @ r.T, torch.eye(3, dtype=torch.float64), atol=1e-4):
            raise ValueError(
                "transform: the 3x3 block is not a rotation times a uniform scale "
                "(shear or non-uniform scale)"
            )
        u, _, vh = torch.linalg.svd(r)  # re-orthonormalise
        return cls(u @ vh, t, s)

    def apply_points(self, x: torch.Tensor) -> torch.Tensor:
        return (self.scale * x.double() @ self.rotation.T + self.translation).to(x.dtype)

    def inverse(self) -> Similarity:
        rt = self.rotation.T
        return Similarity(rt, -(rt @ self.translation) / self.scale, 1.0 / self.scale)

    def matrix(self) -> torch.Tensor:
        """The 4x4 float64 matrix."""
        m = torch.eye(4, dtype=torch.float64)
        m[:3, :3] = self.scale * self.rotation
        m[:3, 3] = self.translation
        return m


_DIRS: torch.Tensor | None = None


def _sample_dirs() -> torch.Tensor:
    global _DIRS
    if _DIRS is None:
        g = torch.Generator().manual_seed(1234)
        d = torch.randn(64, 3, generator=g, dtype=torch.float64)
        _DIRS = d / d.norm(dim=1, keepdim=True)
    return _DIRS


def sh_rotation(rotation: torch.Tensor, degree: int) -> list[torch.Tensor]:
    """``[D_1, ..., D_degree]``: the float64 ``(2l+1)``-square matrices with
    ``c'_l = D_l c_l`` for SH coefficients of band ``l`` under the rotation (module doc)."""
    d = _sample_dirs()
    r = rotation.double()
    y_new = sh_basis(degree, d)  # Y(d')
    y_old = sh_basis(degree, d @ r)  # Y(R^T d') (rows: d'^T R = (R^T d')^T)
    out = []
    for band in range(1, degree + 1):
        sl = slice(band * band, (band + 1) ** 2)
        # Y_old = Y_new @ D  ->  D = lstsq(Y_new, Y_old)
        out.append(torch.linalg.lstsq(y_new[:, sl], y_old[:, sl]).solution)
    return out


def transform_model(m: GaussianModel, tf: Similarity) -> GaussianModel:
    """``m`` moved by ``tf``: means, rotations, scales and SH coefficients (module doc)."""
    p = {k: v.detach().cpu() for k, v in m.params.items()}
    means = tf.apply_points(p["means"])
    qr = matrix_to_quat(tf.rotation)
    quats = quat_multiply(qr, p["quats"].double()).to(p["quats"].dtype)
    scales = p["scales"] + math.log(tf.scale)
    shn = p["shN"].double().clone()
    for band, dm in enumerate(sh_rotation(tf.rotation, m.sh_degree), start=1):
        sl = slice(band * band - 1, (band + 1) ** 2 - 1)
        shn[:, sl] = torch.einsum("ij,njc->nic", dm, shn[:, sl])
    return GaussianModel(means, quats, scales, p["opacities"], p["sh0"], shn.to(p["shN"].dtype))


# ---------------------------------------------------------------------------------- boundary


def object_size(points: torch.Tensor) -> float:
    """``L``: the diagonal of the 1 %..99 % quantile box of ``points`` [N, 3]."""
    x = points.detach().float()
    if len(x) > 200_000:  # torch.quantile's input limit; a strided subsample is plenty
        x = x[:: -(-len(x) // 200_000)]
    lo, hi = torch.quantile(x, 0.01, dim=0), torch.quantile(x, 0.99, dim=0)
    return max(float((hi - lo).norm()), 1e-12)


def find_boundary(
    target_means: torch.Tensor,
    target_opacities: torch.Tensor,
    source_means: torch.Tensor,
    radius: float,
    k: int = 8,
    tau: float = 0.95,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Boundary mask ``[N_t]`` (bool) and, for the ``B`` boundary points in index order, the
    ``[B, k']`` indices of their ``k' = min(k, N_s)`` nearest source centres: boundary where
    those centres' mean distance is ``< radius`` and the (activated) opacity ``> tau``.

    Only target points within ``radius`` of the source's bounding box are queried (a mean
    distance below ``radius`` needs the nearest centre within it), so a small part pasted into
    a large scene costs little."""
    if len(source_means) == 0:
        raise StitchError("the source selection is empty")
    kk = min(int(k), len(source_means))
    src = source_means.detach().float().cpu()
    tgt = target_means.detach().float().cpu()
    lo, hi = src.min(0).values, src.max(0).values
    gap = (torch.maximum(lo - tgt, tgt - hi)).clamp_min(0).norm(dim=1)
    cand = ((gap < radius) & (target_opacities.detach().cpu() > tau)).nonzero()[:, 0]
    mask = torch.zeros(len(tgt), dtype=torch.bool)
    if len(cand) == 0:
        return mask, torch.zeros(0, kk, dtype=torch.long)
    dist, idx = knn(src, kk, queries=tgt[cand])
    near = dist.mean(1) < radius
    mask[cand[near]] = True
    return mask, idx[near]


__all__ = [
    "SOURCE",
    "TARGET",
    "Selection",
    "Similarity",
    "StitchError",
    "check_model",
    "clone_model",
    "find_boundary",
    "load_model",
    "matrix_to_quat",
    "merge",
    "object_size",
    "pad_sh",
    "parse_selection",
    "quat_multiply",
    "quat_to_matrix",
    "sh_rotation",
    "transform_model",
]
