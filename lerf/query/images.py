"""Scalar maps to pictures: colormaps, uint8 conversion, relevancy overlays."""
from __future__ import annotations

from typing import Optional

import torch
from jaxtyping import Float
from torch import Tensor


def colorize(values: Float[Tensor, "h w"], cmap: str = "turbo", vmin: Optional[float] = None,
             vmax: Optional[float] = None) -> Float[Tensor, "h w 3"]:
    """Map a scalar image to colours with a matplotlib colormap (for PNGs and TensorBoard)."""
    import matplotlib

    lo = float(values.min()) if vmin is None else vmin
    hi = float(values.max()) if vmax is None else vmax
    norm = ((values - lo) / max(hi - lo, 1e-8)).clamp(0, 1).numpy()
    return torch.from_numpy(matplotlib.colormaps[cmap](norm)[..., :3]).float()


def to_uint8(img: Float[Tensor, "h w 3"]):
    return (img.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def overlay(rgb: Float[Tensor, "h w 3"], rel: Float[Tensor, "h w"], floor: float = 0.5) -> Float[Tensor, "h w 3"]:
    """Turbo-coloured relevancy over the render where it exceeds `floor` (0.5: as relevant as the
    hardest canonical phrase), fading in from there, as LERF's figures show it."""
    alpha = ((rel - floor) / (1 - floor)).clamp(0, 1)[..., None]
    return rgb.clamp(0, 1) * (1 - 0.7 * alpha) + colorize(rel, vmin=floor, vmax=1.0) * 0.7 * alpha
