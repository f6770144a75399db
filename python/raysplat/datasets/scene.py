"""The one in-memory scene representation every loader returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Scene:
    """A posed image collection, ready for NeRF / 3DGS training.

    Conventions: cameras are camera-to-world ``[N, 3, 4]`` in the OpenGL convention (x right,
    y up, looking down -z), intrinsics are pixel-unit pinhole matrices ``[N, 3, 3]``, images are
    float32 in [0, 1].
    """

    #: [N, H, W, C] float32, C = 3 (RGB) or 4 (RGBA with straight alpha, e.g. Blender).
    images: torch.Tensor
    #: [N, 3, 4] float32 camera-to-world, OpenGL convention.
    c2w: torch.Tensor
    #: [N, 3, 3] float32 intrinsics in pixels.
    K: torch.Tensor
    #: split name ("train", "val", "test") -> int64 indices into ``images``.
    split: dict[str, torch.Tensor]
    #: near / far distance bounds of the content along camera rays.
    near: float
    far: float
    #: [6] axis-aligned box containing the content (xmin, ymin, zmin, xmax, ymax, zmax).
    aabb: torch.Tensor
    #: dataset format this scene was read from ("blender", "llff", "nerfstudio", "colmap").
    format: str
    #: optional sparse points [P, 3] (COLMAP points3D, generator surface samples) and colours [P, 3].
    points: torch.Tensor | None = None
    point_colors: torch.Tensor | None = None
    #: forward-facing capture: rays are best sampled in NDC (LLFF).
    forward_facing: bool = False
    #: optional [M, 3, 4] camera path for videos (LLFF spiral, turntable).
    render_c2w: torch.Tensor | None = None
    #: free-form extra information (file names, scale factors, ...).
    meta: dict = field(default_factory=dict)

    @property
    def height(self) -> int:
        """Image height in pixels."""
        return int(self.images.shape[1])

    @property
    def width(self) -> int:
        """Image width in pixels."""
        return int(self.images.shape[2])

    def indices(self, split: str) -> torch.Tensor:
        """Image indices of ``split`` (raises ``KeyError`` naming the available splits)."""
        if split not in self.split:
            raise KeyError(f"scene has no split {split!r}; available: {sorted(self.split)}")
        return self.split[split]
