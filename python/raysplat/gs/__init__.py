"""3D Gaussian splatting training on :func:`raysplat.rasterization`.

:class:`GaussianModel` (parameters and initialisation), :class:`Trainer` / :class:`TrainConfig`
(3DGS optimisation with adaptive density control, evaluation, checkpoints), :func:`save_ply` /
:func:`load_ply` (the standard 3DGS PLY layout), losses and camera helpers.
"""

from raysplat.gs.camera import c2w_to_viewmat, orbit_path, scene_extent
from raysplat.gs.loss import photometric_loss, psnr, ssim
from raysplat.gs.model import GaussianModel, rgb_to_sh, sh_to_rgb
from raysplat.gs.ply import load_ply, save_ply
from raysplat.gs.strategy import DensifyConfig, DensityControl
from raysplat.gs.trainer import TrainConfig, Trainer

__all__ = [
    "DensifyConfig",
    "DensityControl",
    "GaussianModel",
    "TrainConfig",
    "Trainer",
    "c2w_to_viewmat",
    "load_ply",
    "orbit_path",
    "photometric_loss",
    "psnr",
    "rgb_to_sh",
    "save_ply",
    "scene_extent",
    "sh_to_rgb",
    "ssim",
]
