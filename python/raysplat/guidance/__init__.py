"""Diffusion priors for score distillation (:mod:`raysplat.distill`, :mod:`raysplat.text3d`).

* :class:`DiffusionPrior` — the public interface (``alphas_cumprod`` + ``encode`` / ``decode`` /
  ``embed_prompts`` / ``predict_noise``);
* :class:`StableDiffusionPrior` — real Stable Diffusion checkpoints through diffusers
  (``raysplat[gen]``), and :func:`tiny_stable_diffusion`, a random few-MB one in the same layout;
* :class:`GaussianMixturePrior`, :class:`RenderedMeshPrior`, :class:`TextureMixturePrior` —
  analytic priors with exact ε*.
"""

from raysplat.guidance.analytic import (
    GaussianMixturePrior,
    RenderedMeshPrior,
    TextureMixturePrior,
    procedural_targets,
)
from raysplat.guidance.base import (
    DiffusionPrior,
    add_noise,
    check_images,
    eps_to_v,
    scaled_linear_alphas_cumprod,
    v_to_eps,
)
from raysplat.guidance.stable_diffusion import StableDiffusionPrior, tiny_stable_diffusion

__all__ = [
    "DiffusionPrior",
    "GaussianMixturePrior",
    "RenderedMeshPrior",
    "StableDiffusionPrior",
    "TextureMixturePrior",
    "add_noise",
    "check_images",
    "eps_to_v",
    "procedural_targets",
    "scaled_linear_alphas_cumprod",
    "tiny_stable_diffusion",
    "v_to_eps",
]
