"""3D queries: relevant surface points from several views, kept only where enough training
views actually see them (visibility filtering; the authors' code has no such step, so floaters
seen from a single view survive there)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from lerf.data.cameras import Cameras, backproject
from lerf.query.images import colorize


# The 3D query's relevancy threshold (query.py ply=true and the viewer's "3D" button).
PLY_THRESHOLD = 0.6


@dataclass
class RelevantPoints:
    """The 3D answer to a prompt: what `query.py ply=true` writes and the viewer's "3D" shows."""

    points: Float[Tensor, "n 3"]  # normalised scene frame (the cameras' frame)
    colors: Float[Tensor, "n 3"]  # turbo of relevancy over [0.5, 1]
    values: Float[Tensor, " n"]  # relevancy
    candidates: int  # relevant surface points before the visibility filter


def relevant_points(engine, cameras: Cameras, prompt: str, views: list[int], visibility,
                    threshold: float = PLY_THRESHOLD) -> RelevantPoints:
    """Surface points of `views` whose relevancy exceeds `threshold` (on opaque pixels), kept where
    the run's visibility grid (`lerf.model.visibility.VisibilityGrid`) says enough training views
    saw them — the same filter as the 2D maps."""
    scale = engine.model.geometry.scale_factor
    points, colors, values = [], [], []
    for v in views:
        result = engine.query(prompt, cameras, v)
        render = engine.view(cameras, v)
        keep = ((result.relevancy > threshold) & (render.accumulation > 0.5)).reshape(-1)
        points.append(backproject(cameras, v, render.depth_m, scale)[keep])
        colors.append(colorize(result.relevancy, vmin=0.5, vmax=1.0).reshape(-1, 3)[keep])
        values.append(result.relevancy.reshape(-1)[keep])
    pts, cols, vals = torch.cat(points), torch.cat(colors), torch.cat(values)
    visible = visibility.visible(engine.model.unit_coords(pts))
    return RelevantPoints(pts[visible], cols[visible], vals[visible], pts.shape[0])
