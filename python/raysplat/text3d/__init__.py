"""Text-to-3D by score distillation (SDS / VSD) of NeRFs or 3D Gaussians from a
:class:`~raysplat.guidance.DiffusionPrior` (see :mod:`raysplat.text3d.trainer`)."""

from raysplat.text3d.config import Text3DConfig
from raysplat.text3d.export import marching_tetrahedra
from raysplat.text3d.trainer import Trainer, load_prior, sample_cameras, view_suffix

__all__ = ["Text3DConfig", "Trainer", "load_prior", "marching_tetrahedra", "sample_cameras", "view_suffix"]
