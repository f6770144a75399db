"""Cameras shared by every method: the OpenGL -> OpenCV conversion, ``look_at`` and camera paths.

Conventions: poses are OpenGL camera-to-world matrices (x right, y up, looking down -z), as in
:class:`~raysplat.datasets.Scene`; :func:`raysplat.rasterization` wants OpenCV world-to-camera
``viewmats`` (:func:`c2w_to_viewmat`). Paths are ``[frames, 3, 4]`` poses:

* :func:`orbit` — a circle around a centre at a fixed elevation (a turntable);
* :func:`orbit_path` — the turntable that fits a set of cameras (centre: the point closest to
  all optical axes; radius, height and up axis: the cameras' means);
* :func:`spiral_path` — forward-facing captures: the mean camera moved on an ellipse in its
  image plane, always looking at the focus point (LLFF's render path, simplified).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

#: flips the camera's y and z axes: OpenGL (x right, y up, looking down -z) <-> OpenCV
#: (x right, y down, looking down +z)
_FLIP = (1.0, -1.0, -1.0)

Vec = torch.Tensor | Sequence[float]


def _vec(x: Vec, like: torch.Tensor | None = None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    dtype = like.dtype if like is not None else torch.float64
    return torch.as_tensor(x, dtype=dtype, device=None if like is None else like.device)


def c2w_to_viewmat(c2w: torch.Tensor) -> torch.Tensor:
    """OpenCV world-to-camera ``viewmats`` ``[..., 4, 4]`` from OpenGL camera-to-world poses
    ``[..., 3, 4]`` or ``[..., 4, 4]`` (inverted in float64, returned in ``c2w``'s dtype)."""
    if c2w.dim() < 2 or tuple(c2w.shape[-2:]) not in ((3, 4), (4, 4)):
        raise ValueError(f"c2w must have shape [..., 3, 4] or [..., 4, 4], got {tuple(c2w.shape)}")
    m = torch.zeros((*c2w.shape[:-2], 4, 4), dtype=torch.float64, device=c2w.device)
    m[..., :3, :4] = c2w[..., :3, :4].double()
    m[..., 3, 3] = 1.0
    m[..., :3, :3] = m[..., :3, :3] * m.new_tensor(_FLIP)
    return torch.linalg.inv(m).to(c2w.dtype)


def look_at(eye: Vec, target: Vec, up: Vec = (0.0, 0.0, 1.0)) -> torch.Tensor:
    """OpenGL camera-to-world ``[..., 3, 4]`` at ``eye`` looking at ``target``, with ``up``
    roughly up (default +z, the sample scenes' up axis; text-to-3D uses +y). Batched over leading
    dimensions; float64 unless ``eye`` is a tensor (then its dtype)."""
    eye = _vec(eye)
    target, up = _vec(target, eye), _vec(up, eye)
    target, up = target.expand_as(eye), up.expand_as(eye)
    back = torch.nn.functional.normalize(eye - target, dim=-1)
    right = torch.nn.functional.normalize(torch.linalg.cross(up, back, dim=-1), dim=-1)
    true_up = torch.linalg.cross(back, right, dim=-1)
    return torch.stack([right, true_up, back, eye], -1)


def orbit(
    centre: Vec,
    radius: float,
    elevation_deg: float,
    frames: int,
    up: Vec = (0.0, 0.0, 1.0),
    start: Vec | None = None,
) -> torch.Tensor:
    """``[frames, 3, 4]`` cameras on a circle of ``radius`` around ``centre`` at ``elevation_deg``
    above the plane normal to ``up``, all looking at ``centre``; the first camera lies in the
    direction of ``start`` (projected onto that plane; default: any direction normal to ``up``)."""
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    centre = _vec(centre).double()
    up = torch.nn.functional.normalize(_vec(up).double(), dim=0)
    if start is None:
        helper = torch.tensor([1.0, 0, 0], dtype=torch.float64)
        start = helper if abs(float(up @ helper)) < 0.9 else torch.tensor([0.0, 1, 0], dtype=torch.float64)
    a = _vec(start).double()
    a = torch.nn.functional.normalize(a - (a @ up) * up, dim=0)
    b = torch.linalg.cross(up, a)
    el = math.radians(elevation_deg)
    t = torch.arange(frames, dtype=torch.float64) * (2 * math.pi / frames)
    ring = torch.cos(t)[:, None] * a + torch.sin(t)[:, None] * b
    eyes = centre + radius * (math.cos(el) * ring + math.sin(el) * up)
    return look_at(eyes, centre, up)


def _focus(c2w: torch.Tensor) -> torch.Tensor:
    """The point closest (least squares) to the optical axes of the cameras ``c2w``."""
    o, d = c2w[:, :3, 3], -c2w[:, :3, 2]
    proj = torch.eye(3, dtype=c2w.dtype) - d[:, :, None] * d[:, None, :]
    return torch.linalg.lstsq(proj.sum(0), (proj @ o[:, :, None]).sum(0)).solution[:, 0]


def orbit_path(c2w: torch.Tensor, frames: int = 40) -> torch.Tensor:
    """A turntable ``[frames, 3, 4]`` (float32) around the point the cameras ``c2w`` look at, at
    their mean distance and height, starting at the first camera's azimuth."""
    c2w = c2w.double()
    centre = _focus(c2w)
    up = torch.nn.functional.normalize(c2w[:, :3, 1].mean(0), dim=0)
    rel = c2w[:, :3, 3] - centre
    radius = float(rel.norm(dim=-1).mean())
    height = float((rel @ up).mean())
    elevation = math.degrees(math.asin(max(-1.0, min(1.0, height / max(radius, 1e-12)))))
    return orbit(centre, radius, elevation, frames, up, start=rel[0]).float()


def spiral_path(c2w: torch.Tensor, frames: int = 40, scale: float = 0.3) -> torch.Tensor:
    """A forward-facing path ``[frames, 3, 4]`` (float32): the mean camera of ``c2w`` moved on an
    ellipse in its image plane (semi-axes ``scale`` times the spread of the camera centres, at
    least ``scale`` times 10 % of the focus distance), looking at the cameras' focus point."""
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    c2w = c2w.double()
    mean = c2w.mean(0)
    right = torch.nn.functional.normalize(mean[:, 0], dim=0)
    up = torch.nn.functional.normalize(mean[:, 1], dim=0)
    focus = _focus(c2w) if len(c2w) > 1 else mean[:, 3] - mean[:, 2]
    dist = float((focus - mean[:, 3]).norm())
    spread = c2w[:, :3, 3].std(0) if len(c2w) > 1 else torch.zeros(3, dtype=torch.float64)
    rx = scale * max(float((spread @ right).abs()), 0.1 * dist)
    ry = scale * max(float((spread @ up).abs()), 0.1 * dist)
    t = torch.arange(frames, dtype=torch.float64) * (2 * math.pi / frames)
    eyes = mean[:, 3] + rx * torch.cos(t)[:, None] * right + ry * torch.sin(t)[:, None] * up
    return look_at(eyes, focus, up).float()


def intrinsics(width: int, height: int, fov_y_deg: float) -> torch.Tensor:
    """Pinhole ``K`` ``[3, 3]`` (float32) with vertical field of view ``fov_y_deg`` and the
    principal point at the image centre."""
    f = 0.5 * height / math.tan(math.radians(fov_y_deg) / 2)
    return torch.tensor([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], dtype=torch.float32)


def scene_extent(c2w: torch.Tensor) -> float:
    """3DGS's ``cameras_extent``: 1.1 times the largest camera distance from the cameras' mean."""
    centres = c2w[:, :3, 3].double()
    return float((centres - centres.mean(0)).norm(dim=-1).max()) * 1.1
