"""NeRF reconstruction: a hash-grid radiance field, four samplers (occupancy grid, mip-NeRF 360
proposal networks, NeRF hierarchical, ProNeRF) and a :class:`Trainer` on the shared lifecycle of
:mod:`raysplat.training` (evaluation, rendering, exactly resumable checkpoints)."""

from raysplat.hashgrid import hashgrid_encode
from raysplat.nerf.encoding import HashGrid, sh_encode
from raysplat.nerf.field import DensityField, RadianceField, SceneBox, contract
from raysplat.nerf.pronerf import ProNerfSampler
from raysplat.nerf.samplers import (
    SAMPLERS,
    HierarchicalSampler,
    OccGridSampler,
    ProposalSampler,
    Rays,
    RenderOut,
)
from raysplat.nerf.trainer import NerfConfig, Trainer
from raysplat.training.data import load_scene

__all__ = [
    "SAMPLERS",
    "DensityField",
    "HashGrid",
    "HierarchicalSampler",
    "NerfConfig",
    "OccGridSampler",
    "ProNerfSampler",
    "ProposalSampler",
    "RadianceField",
    "Rays",
    "RenderOut",
    "SceneBox",
    "Trainer",
    "contract",
    "hashgrid_encode",
    "load_scene",
    "sh_encode",
]
