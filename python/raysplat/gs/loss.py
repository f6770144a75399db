"""Image losses and metrics: L1, SSIM (11x11 Gaussian window, sigma 1.5, as 3DGS), PSNR."""

from __future__ import annotations

import math

import torch

_C1, _C2 = 0.01**2, 0.03**2


def _band(n: int, size: int, sigma: float, like: torch.Tensor) -> torch.Tensor:
    """``[n, n]`` matrix ``G`` with ``G @ x`` = the 1D Gaussian filter of ``x`` along its first
    axis with zero padding (``conv2d(..., padding=size // 2)`` of a separable window)."""
    x = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    i = torch.arange(n)
    off = i[None, :] - i[:, None] + size // 2  # column j, row i -> tap j - i
    inside = (off >= 0) & (off < size)
    return torch.where(inside, g[off.clamp(0, size - 1)], torch.zeros(())).to(like)


def ssim(img: torch.Tensor, ref: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Mean structural similarity of two images (3DGS's ``ssim``: ``window`` x ``window``
    Gaussian window of std ``sigma``, zero padding, ``C1 = 0.01^2``, ``C2 = 0.03^2``, values in
    [0, 1] assumed).

    The separable window is applied as two banded matrix products (the same sums as
    ``conv2d(..., padding=window // 2)``, several times faster on CPU than a depthwise conv).

    Args:
        img, ref: ``[H, W, C]`` or ``[B, H, W, C]`` images.

    Returns:
        A scalar tensor (differentiable).
    """
    if img.shape != ref.shape:
        raise ValueError(
            f"img and ref must have the same shape, got {tuple(img.shape)} and {tuple(ref.shape)}"
        )
    if img.dim() == 3:
        img, ref = img[None], ref[None]
    x, y = img.permute(0, 3, 1, 2), ref.permute(0, 3, 1, 2)  # [B, C, H, W]
    gh = _band(x.shape[2], window, sigma, x)
    gw = _band(x.shape[3], window, sigma, x)
    stack = torch.stack([x, y, x * x, y * y, x * y])  # [5, B, C, H, W]
    mu_x, mu_y, e_xx, e_yy, e_xy = (gh @ stack @ gw.T).unbind(0)
    mu_x2, mu_y2, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    s_x, s_y, s_xy = e_xx - mu_x2, e_yy - mu_y2, e_xy - mu_xy
    m = ((2 * mu_xy + _C1) * (2 * s_xy + _C2)) / ((mu_x2 + mu_y2 + _C1) * (s_x + s_y + _C2))
    return m.mean()


def psnr(img: torch.Tensor, ref: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB for images in [0, 1] (``inf`` when identical)."""
    mse = float(((img.detach().double() - ref.detach().double()) ** 2).mean())
    return math.inf if mse == 0 else -10.0 * math.log10(mse)


def photometric_loss(img: torch.Tensor, ref: torch.Tensor, ssim_lambda: float = 0.2) -> torch.Tensor:
    """3DGS's loss ``(1 - lambda) * L1 + lambda * (1 - SSIM)``."""
    l1 = (img - ref).abs().mean()
    if ssim_lambda == 0:
        return l1
    return (1.0 - ssim_lambda) * l1 + ssim_lambda * (1.0 - ssim(img, ref))
