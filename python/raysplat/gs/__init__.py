"""3D Gaussian splatting training on :func:`raysplat.rasterization`.

:class:`GaussianModel` (parameters and initialisation), :class:`Trainer` / :class:`GSConfig`
(3DGS optimisation with adaptive density control, evaluation, checkpoints; the shared lifecycle
of :mod:`raysplat.training`), :func:`save_ply` / :func:`load_ply` (the standard 3DGS PLY layout)
and the loss.
"""

from raysplat.gs.loss import photometric_loss
from raysplat.gs.model import GaussianModel, rgb_to_sh, sh_to_rgb
from raysplat.gs.ply import load_ply, save_ply
from raysplat.gs.strategy import DensifyConfig, DensityControl
from raysplat.gs.trainer import GSConfig, TrainConfig, Trainer

__all__ = [
    "DensifyConfig",
    "DensityControl",
    "GSConfig",
    "GaussianModel",
    "TrainConfig",
    "Trainer",
    "load_ply",
    "photometric_loss",
    "rgb_to_sh",
    "save_ply",
    "sh_to_rgb",
]
