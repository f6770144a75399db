"""NeRDF (Wu et al., ICCV 2023): a network that predicts, in one pass per ray, Fourier series of
density and colour along the ray, rendered by :func:`raysplat.render_distribution`; distilled
from a trained raysplat NeRF (:class:`Trainer`, ``raysplat train nerdf DATA --teacher ...``)."""

from raysplat.nerdf.model import NerdfNetwork, input_dim, positional_encoding, ray_input, real_sh
from raysplat.nerdf.trainer import NerdfConfig, Trainer, normalized_sigma_loss, random_pose

__all__ = [
    "NerdfConfig",
    "NerdfNetwork",
    "Trainer",
    "input_dim",
    "normalized_sigma_loss",
    "positional_encoding",
    "random_pose",
    "ray_input",
    "real_sh",
]
