"""The diffusion-prior interface of score distillation, and the DDPM identities it relies on.

A prior is a denoiser ε(z_t, t, y) trained with the forward process (DDPM, Ho et al. 2020)::

    z_t = sqrt(ᾱ_t) z_0 + sqrt(1 - ᾱ_t) ε,          ε ~ N(0, I)
    ẑ_0 = (z_t - sqrt(1 - ᾱ_t) ε̂) / sqrt(ᾱ_t)
    v   = sqrt(ᾱ_t) ε - sqrt(1 - ᾱ_t) z_0     ⇒  ε = sqrt(ᾱ_t) v + sqrt(1 - ᾱ_t) z_t

(Salimans & Ho 2022 for v). Stable Diffusion trains with the "scaled linear" schedule
β_t = (linspace(sqrt(0.00085), sqrt(0.012), 1000))², ᾱ_t = Π (1 - β_s).

:class:`DiffusionPrior` is what :mod:`raysplat.distill` and :mod:`raysplat.text3d` need from a
model; anything implementing its four abstract methods and setting ``alphas_cumprod`` works
(see the README for a third-party example).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

__all__ = [
    "DiffusionPrior",
    "add_noise",
    "check_images",
    "eps_to_v",
    "scaled_linear_alphas_cumprod",
    "v_to_eps",
]


def scaled_linear_alphas_cumprod(
    num_train_timesteps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012
) -> torch.Tensor:
    """ᾱ_t ``[T]`` float32 of Stable Diffusion's "scaled_linear" β schedule."""
    if num_train_timesteps < 2:
        raise ValueError(f"num_train_timesteps must be >= 2, got {num_train_timesteps}")
    betas = torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, 0).float()


def _coef(
    alphas_cumprod: torch.Tensor, t: torch.Tensor, like: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    a = alphas_cumprod.to(like.device)[t.to(like.device).long()].to(like.dtype)
    a = a.reshape(-1, *([1] * (like.ndim - 1)))
    return a.sqrt(), (1 - a).sqrt()


def add_noise(
    alphas_cumprod: torch.Tensor, z0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor
) -> torch.Tensor:
    """``sqrt(ᾱ_t) z0 + sqrt(1 - ᾱ_t) noise`` per batch item (``t`` LongTensor ``[B]``)."""
    a, s = _coef(alphas_cumprod, t, z0)
    return a * z0 + s * noise


def v_to_eps(
    alphas_cumprod: torch.Tensor, v: torch.Tensor, z_t: torch.Tensor, t: torch.Tensor
) -> torch.Tensor:
    """ε from a v-prediction: ``sqrt(ᾱ_t) v + sqrt(1 - ᾱ_t) z_t``."""
    a, s = _coef(alphas_cumprod, t, z_t)
    return a * v + s * z_t


def eps_to_v(
    alphas_cumprod: torch.Tensor, eps: torch.Tensor, z_t: torch.Tensor, t: torch.Tensor
) -> torch.Tensor:
    """v from an ε-prediction: ``(ε - sqrt(1 - ᾱ_t) z_t) / sqrt(ᾱ_t)``."""
    a, s = _coef(alphas_cumprod, t, z_t)
    return (eps - s * z_t) / a


def check_images(name: str, images: object, *, check_range: bool = True) -> torch.Tensor:
    """Validates ``[B, 3, H, W]`` floating images in [0, 1] (the input of :meth:`DiffusionPrior.encode`)."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"{name} must have shape [B, 3, H, W], got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {images.dtype}")
    if check_range:
        with torch.no_grad():
            lo, hi = float(images.min()), float(images.max())
        if not (lo >= -1e-4 and hi <= 1 + 1e-4):
            raise ValueError(f"{name} must hold values in [0, 1], got range [{lo:.3g}, {hi:.3g}]")
    return images


class DiffusionPrior(ABC):
    """A pretrained (or analytic) diffusion model seen by score distillation.

    Required: the attribute ``alphas_cumprod`` (``[T]`` float, ᾱ_t of the training schedule) and
    the four methods below. No ``__init__`` is required; a subclass sets its attributes itself.

    Optional members (defaults here): ``accepts_control`` (``False``; priors that take geometry
    conditioning set it and accept ``control=`` in :meth:`predict_noise`), ``camera_aware``
    (``False``; the prior uses ``c2w``/``K``), ``named_prompts`` (``False``; prompts are names of
    targets rather than text, so text-to-3D turns view-dependent prompts off),
    :meth:`variational_score` (``None``: VSD builds its own ε_φ), and ``shared_views(bank)``
    (not defined here: a context manager through which :mod:`raysplat.texgen` shares the views
    denoised so far with the next one; a diffusers UNet gets shared self-attention instead, see
    :class:`raysplat.guidance.TextureMixturePrior` for an analytic one).
    """

    #: ``[T]`` ᾱ_t of the training noise schedule (a plain attribute)
    alphas_cumprod: torch.Tensor
    #: whether :meth:`predict_noise` accepts ``control=`` (geometry conditioning)
    accepts_control: bool = False
    #: whether :meth:`predict_noise` uses the camera (``c2w``, ``K``)
    camera_aware: bool = False
    #: prompts are names of targets (analytic priors), not free text
    named_prompts: bool = False

    @abstractmethod
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``[B, 3, H, W]`` in [0, 1] -> the model's space ``z`` (differentiable)."""

    @abstractmethod
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The model's space -> images ``[B, 3, H, W]`` (about [0, 1])."""

    @abstractmethod
    def embed_prompts(self, prompts: list[str]) -> torch.Tensor:
        """Conditioning ``[len(prompts), ...]``; the empty string is the unconditional prompt."""

    @abstractmethod
    def predict_noise(
        self,
        z_t: torch.Tensor,
        t: torch.Tensor,
        cond: torch.Tensor,
        c2w: torch.Tensor | None = None,
        K: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """ε prediction for noisy ``z_t`` at LongTensor ``t [B]`` under ``cond [B, ...]``.

        ``c2w [B, 4, 4]`` (OpenGL camera-to-world) and ``K [B, 3, 3]`` (pixels of the rendered
        image) describe the rendered view for camera-aware priors; others ignore them."""

    def variational_score(self) -> torch.nn.Module | None:
        """The ε_φ network VSD should train, or ``None`` to let :mod:`raysplat.distill` build one."""
        return None

    @property
    def num_train_timesteps(self) -> int:
        return int(self.alphas_cumprod.shape[0])

    @property
    def device(self) -> torch.device:
        return self.alphas_cumprod.device
