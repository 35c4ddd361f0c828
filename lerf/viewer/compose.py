"""What the browser shows: the render (RGB or depth) with the relevancy overlay on top."""
from __future__ import annotations

from typing import Optional

import numpy as np
from jaxtyping import Float, UInt8
from torch import Tensor

from lerf.viewer.backend import Geometry, colorize, to_uint8


def blend_relevancy(base: Float[Tensor, "h w 3"], rel: Float[Tensor, "h w"], threshold: float,
                    opacity: float) -> Float[Tensor, "h w 3"]:
    """Turbo-coloured relevancy at `opacity` over pixels whose relevancy reaches `threshold`; the
    rest of the image is left untouched, so what is lit is exactly what passes the threshold.

    Example: threshold 0.5, opacity 1: a pixel at 0.4 keeps its colour, one at 1.0 becomes
    turbo's top (dark red), one at 0.5 turbo's bottom (dark blue).
    """
    colour = colorize(rel, vmin=threshold, vmax=max(1.0, threshold + 1e-3))
    alpha = opacity * (rel >= threshold).float()[..., None]
    return base.clamp(0, 1) * (1 - alpha) + colour * alpha


def depth_image(depth_m: Float[Tensor, "h w"], accumulation: Float[Tensor, "h w"]) -> Float[Tensor, "h w 3"]:
    """Depth as turbo over the range of opaque pixels (near = blue), empty pixels black."""
    solid = accumulation > 0.5
    vals = depth_m[solid] if bool(solid.any()) else depth_m.reshape(-1)
    img = colorize(depth_m, vmin=float(vals.min()), vmax=float(vals.max()))
    return img * solid.float()[..., None]


def frame_image(geometry: Geometry, show: str, rel: Optional[Float[Tensor, "h w"]], threshold: float,
                opacity: float) -> UInt8[np.ndarray, "h w 3"]:
    """The picture for the browser: `show` is "rgb" or "depth"; the overlay when `rel` is given."""
    base = geometry.rgb if show == "rgb" else depth_image(geometry.depth_m, geometry.accumulation)
    if rel is not None:
        base = blend_relevancy(base, rel, threshold, opacity)
    return to_uint8(base)
