"""Image quality metrics for novel-view renders: PSNR and SSIM, plain torch, images in [0, 1]."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

# Wang et al. 2004, "Image quality assessment: from error visibility to structural similarity":
# 11x11 Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03, dynamic range L (1 for [0, 1] images).
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def psnr(pred: Float[Tensor, "h w 3"], gt: Float[Tensor, "h w 3"], max_val: float = 1.0) -> float:
    """10 log10(max_val^2 / MSE) in dB; inf for identical images.

    Example: every pixel off by 0.1 -> MSE 0.01 -> 20 dB.
    """
    mse = float(torch.mean((pred.double() - gt.double()) ** 2))
    return math.inf if mse == 0.0 else 10.0 * math.log10(max_val**2 / mse)


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> Float[Tensor, "size"]:
    """Normalised 1-D Gaussian taps centred on the middle tap (the 2-D window is its outer product).

    Example: size 3, sigma 1 -> [0.2741, 0.4519, 0.2741].
    """
    offsets = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    taps = torch.exp(-(offsets**2) / (2 * sigma**2))
    return taps / taps.sum()


def _blur(images: Float[Tensor, "n 1 h w"], taps: Float[Tensor, "k"]) -> Float[Tensor, "n 1 h2 w2"]:
    """Separable Gaussian blur without padding ('valid': only windows fully inside the image)."""
    k = taps.numel()
    out = F.conv2d(images, taps.view(1, 1, k, 1))
    return F.conv2d(out, taps.view(1, 1, 1, k))


def ssim(pred: Float[Tensor, "h w 3"], gt: Float[Tensor, "h w 3"], max_val: float = 1.0) -> float:
    """Mean SSIM over all valid 11x11 windows and the channels (Wang et al. 2004).

    Local means, variances and covariance use the Gaussian window; only windows that fit inside
    the image are scored (the 'valid' convention of the reference MATLAB code and mip-NeRF's
    ``compute_ssim``; 3DGS-style code zero-pads instead, which lowers scores at the border).
    Identical images give exactly 1.0.
    """
    if pred.shape != gt.shape:
        raise ValueError(f"ssim needs equal shapes, got {tuple(pred.shape)} and {tuple(gt.shape)}")
    h, w = pred.shape[:2]
    if min(h, w) < SSIM_WINDOW:
        raise ValueError(f"ssim needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {h}x{w}")
    x = pred.double().permute(2, 0, 1)[:, None]  # channels as batch: c 1 h w
    y = gt.double().permute(2, 0, 1)[:, None]
    taps = gaussian_window().to(x.device)
    c1, c2 = (SSIM_K1 * max_val) ** 2, (SSIM_K2 * max_val) ** 2

    mu_x, mu_y = _blur(x, taps), _blur(y, taps)
    var_x = _blur(x * x, taps) - mu_x**2
    var_y = _blur(y * y, taps) - mu_y**2
    cov = _blur(x * y, taps) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )
    return float(ssim_map.mean())
