"""Camera conventions for splatting: OpenGL camera-to-world -> OpenCV world-to-camera, orbits."""

from __future__ import annotations

import math

import torch

#: flips the camera's y and z axes: OpenGL (x right, y up, looking down -z) <-> OpenCV
#: (x right, y down, looking down +z)
_FLIP = (1.0, -1.0, -1.0)


def c2w_to_viewmat(c2w: torch.Tensor) -> torch.Tensor:
    """OpenCV world-to-camera ``viewmats`` for :func:`raysplat.rasterization` from OpenGL poses.

    ``Scene.c2w`` is camera-to-world in the OpenGL convention; the rasterizer wants the inverse
    of the OpenCV camera-to-world, whose y and z columns are the OpenGL ones negated. Computed
    in float64 and returned in ``c2w``'s dtype.

    Args:
        c2w: ``[..., 3, 4]`` or ``[..., 4, 4]`` OpenGL camera-to-world matrices.

    Returns:
        ``[..., 4, 4]`` world-to-camera matrices (OpenCV).
    """
    if c2w.dim() < 2 or tuple(c2w.shape[-2:]) not in ((3, 4), (4, 4)):
        raise ValueError(f"c2w must have shape [..., 3, 4] or [..., 4, 4], got {tuple(c2w.shape)}")
    m = torch.zeros((*c2w.shape[:-2], 4, 4), dtype=torch.float64, device=c2w.device)
    m[..., :3, :4] = c2w[..., :3, :4].double()
    m[..., 3, 3] = 1.0
    m[..., :3, :3] = m[..., :3, :3] * m.new_tensor(_FLIP)
    return torch.linalg.inv(m).to(c2w.dtype)


def look_at(eye: torch.Tensor, target: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """OpenGL camera-to-world ``[3, 4]`` at ``eye`` looking at ``target`` with ``up`` roughly up."""
    forward = torch.nn.functional.normalize(target - eye, dim=0)
    right = torch.nn.functional.normalize(torch.linalg.cross(forward, up), dim=0)
    true_up = torch.linalg.cross(right, forward)
    return torch.stack([right, true_up, -forward, eye], 1)


def orbit_path(c2w: torch.Tensor, frames: int = 40) -> torch.Tensor:
    """A turntable ``[frames, 3, 4]`` around the point the cameras ``c2w`` look at.

    The centre is the least-squares closest point to all optical axes, the up axis the mean
    camera up vector, and radius and elevation the cameras' means.
    """
    c2w = c2w.double()
    o, d = c2w[:, :3, 3], -c2w[:, :3, 2]
    proj = torch.eye(3, dtype=c2w.dtype) - d[:, :, None] * d[:, None, :]
    centre = torch.linalg.lstsq(proj.sum(0), (proj @ o[:, :, None]).sum(0)).solution[:, 0]
    up = torch.nn.functional.normalize(c2w[:, :3, 1].mean(0), dim=0)
    rel = o - centre
    radius = float(rel.norm(dim=-1).mean())
    height = float((rel @ up).mean())
    ring = max(radius**2 - height**2, 1e-12) ** 0.5
    a = torch.nn.functional.normalize(rel[0] - (rel[0] @ up) * up, dim=0)
    b = torch.linalg.cross(up, a)
    poses = []
    for i in range(frames):
        t = 2 * math.pi * i / frames
        eye = centre + height * up + ring * (math.cos(t) * a + math.sin(t) * b)
        poses.append(look_at(eye, centre, up))
    return torch.stack(poses).float()


def scene_extent(c2w: torch.Tensor) -> float:
    """3DGS's ``cameras_extent``: 1.1 times the largest camera distance from the cameras' mean."""
    centres = c2w[:, :3, 3].double()
    return float((centres - centres.mean(0)).norm(dim=-1).max()) * 1.1
