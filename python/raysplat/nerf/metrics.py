"""Image metrics: PSNR and SSIM (Wang et al. 2004; gaussian window 11, sigma 1.5), in torch."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def psnr(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of images in [0, 1] (any shape)."""
    mse = float(((pred.float() - target.float()) ** 2).mean())
    return float("inf") if mse == 0 else -10.0 * math.log10(mse)


def _gaussian(size: int, sigma: float, device, dtype) -> torch.Tensor:
    x = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(
    pred: torch.Tensor, target: torch.Tensor, window: int = 11, sigma: float = 1.5, max_val: float = 1.0
) -> float:
    """Mean structural similarity of two [H, W, C] (or [H, W]) images in [0, max_val].

    Gaussian-weighted local statistics over ``valid`` windows (no padding), constants
    ``C1 = (0.01 max_val)^2``, ``C2 = (0.03 max_val)^2``, averaged over pixels and channels (the
    NeRF / mip-NeRF evaluation).
    """
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    if pred.dim() == 2:
        pred, target = pred[..., None], target[..., None]
    if pred.dim() != 3:
        raise ValueError(f"images must have shape [H, W] or [H, W, C], got {tuple(pred.shape)}")
    if min(pred.shape[0], pred.shape[1]) < window:
        raise ValueError(f"images must be at least {window} pixels on each side")
    x = pred.double().permute(2, 0, 1)[:, None]
    y = target.double().permute(2, 0, 1)[:, None]
    g = _gaussian(window, sigma, x.device, x.dtype)

    def blur(z):
        z = F.conv2d(z, g.reshape(1, 1, 1, -1))
        return F.conv2d(z, g.reshape(1, 1, -1, 1))

    mu_x, mu_y = blur(x), blur(y)
    sxx = blur(x * x) - mu_x**2
    syy = blur(y * y) - mu_y**2
    sxy = blur(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * max_val) ** 2, (0.03 * max_val) ** 2
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2)
    return float((num / den).mean())
