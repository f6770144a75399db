"""3DGS's training loss: ``(1 - lambda) * L1 + lambda * D-SSIM`` with zero-padded SSIM (as the
3DGS code trains; evaluation reports valid-window SSIM, see :mod:`raysplat.metrics`)."""

from __future__ import annotations

import torch

from raysplat.metrics import dssim_loss


def photometric_loss(img: torch.Tensor, ref: torch.Tensor, ssim_lambda: float = 0.2) -> torch.Tensor:
    """3DGS's loss ``(1 - lambda) * L1 + lambda * (1 - SSIM_zero_padded)``."""
    l1 = (img - ref).abs().mean()
    if ssim_lambda == 0:
        return l1
    return (1.0 - ssim_lambda) * l1 + ssim_lambda * dssim_loss(img, ref)
