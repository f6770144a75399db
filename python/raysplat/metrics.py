"""Image metrics shared by every method: PSNR and SSIM.

SSIM follows Wang et al. 2004 with an 11 x 11 Gaussian window (sigma 1.5) and constants
``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2``. One implementation with an explicit ``padding``:

* ``"valid"`` (what every evaluation in raysplat reports, as the NeRF / mip-NeRF evaluation
  code does): the local statistics are taken only where the window fits inside the image;
* ``"zero"``: the window runs over every pixel with zero padding, as 3DGS's ``ssim`` does. The
  3DGS training loss (:func:`dssim_loss`) uses it; SSIMs reported by 3DGS's own evaluation
  code are computed this way and so differ slightly from ours.

The separable window is applied as two banded matrix products (the same sums as a
``conv2d`` with zero padding, several times faster on CPU than a depthwise convolution); the
valid variant keeps the interior of those maps, which is exactly the valid convolution.
"""

from __future__ import annotations

import math

import torch

PADDINGS = ("valid", "zero")


def psnr(pred: torch.Tensor, target: torch.Tensor, max_val: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB of images in ``[0, max_val]`` (any shape; ``inf`` when
    identical). Computed in float64."""
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    mse = float(((pred.detach().double() - target.detach().double()) ** 2).mean())
    return math.inf if mse == 0 else 10.0 * math.log10(max_val**2 / mse)


def _band(n: int, size: int, sigma: float, like: torch.Tensor) -> torch.Tensor:
    """``[n, n]`` matrix ``G``: ``G @ x`` is the 1D Gaussian filter of ``x`` along its first axis
    with zero padding."""
    x = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    i = torch.arange(n)
    off = i[None, :] - i[:, None] + size // 2  # column j, row i -> tap j - i
    inside = (off >= 0) & (off < size)
    return torch.where(inside, g[off.clamp(0, size - 1)], torch.zeros((), dtype=torch.float64)).to(like)


def ssim_map(
    pred: torch.Tensor,
    target: torch.Tensor,
    padding: str = "valid",
    window: int = 11,
    sigma: float = 1.5,
    max_val: float = 1.0,
) -> torch.Tensor:
    """The per-pixel SSIM map ``[B, C, H', W']`` of two ``[H, W, C]`` / ``[B, H, W, C]`` (or
    ``[H, W]``) images; ``H' = H - window + 1`` with ``padding="valid"``, ``H`` with ``"zero"``.
    Differentiable."""
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    if padding not in PADDINGS:
        raise ValueError(f"padding must be 'valid' or 'zero', got {padding!r}")
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be a positive odd number, got {window}")
    if pred.dim() == 2:
        pred, target = pred[..., None], target[..., None]
    if pred.dim() == 3:
        pred, target = pred[None], target[None]
    if pred.dim() != 4:
        raise ValueError(f"images must have shape [H, W], [H, W, C] or [B, H, W, C], got {tuple(pred.shape)}")
    h, w = pred.shape[1], pred.shape[2]
    if padding == "valid" and min(h, w) < window:
        raise ValueError(f"images must be at least {window} pixels on each side for padding='valid'")
    x, y = pred.permute(0, 3, 1, 2), target.permute(0, 3, 1, 2)  # [B, C, H, W]
    gh, gw = _band(h, window, sigma, x), _band(w, window, sigma, x)
    stack = torch.stack([x, y, x * x, y * y, x * y])  # [5, B, C, H, W]
    stats = gh @ stack @ gw.T
    if padding == "valid":
        r = window // 2
        stats = stats[..., r : h - r, r : w - r]
    mu_x, mu_y, e_xx, e_yy, e_xy = stats.unbind(0)
    mu_x2, mu_y2, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    c1, c2 = (0.01 * max_val) ** 2, (0.03 * max_val) ** 2
    num = (2 * mu_xy + c1) * (2 * (e_xy - mu_xy) + c2)
    den = (mu_x2 + mu_y2 + c1) * ((e_xx - mu_x2) + (e_yy - mu_y2) + c2)
    return num / den


def ssim(
    pred: torch.Tensor,
    target: torch.Tensor,
    padding: str = "valid",
    window: int = 11,
    sigma: float = 1.5,
    max_val: float = 1.0,
) -> float:
    """Mean SSIM of two images (see :func:`ssim_map`), in float64, as a Python float: the
    evaluation metric (``padding="valid"`` by default)."""
    with torch.no_grad():
        return float(ssim_map(pred.double(), target.double(), padding, window, sigma, max_val).mean())


def dssim_loss(
    pred: torch.Tensor, target: torch.Tensor, window: int = 11, sigma: float = 1.5
) -> torch.Tensor:
    """3DGS's structural loss ``1 - SSIM`` with zero padding (a differentiable scalar tensor)."""
    return 1.0 - ssim_map(pred, target, "zero", window, sigma).mean()
