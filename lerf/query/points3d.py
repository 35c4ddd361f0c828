"""3D queries: relevant surface points from several views, kept only where enough training
views actually see them (visibility filtering; the authors' code has no such step, so floaters
seen from a single view survive there)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from lerf.data.cameras import Cameras, camera_rays, image_pixels
from lerf.data.units import depth_m_to_ray_t, to_metres
from lerf.query.images import colorize


def backproject(cameras: Cameras, cam: int, depth_m: Float[Tensor, "h w"], scale_factor: float
                ) -> Float[Tensor, "n 3"]:
    """Surface points of every pixel in normalised scene coordinates, from camera-z depth (metres)."""
    u, v = image_pixels(cameras.width, cameras.height)
    origins, dirs, z_per_t = camera_rays(cameras, torch.full_like(u, cam, dtype=torch.long), u, v)
    t = depth_m_to_ray_t(depth_m.reshape(-1), z_per_t, scale_factor)
    return origins + dirs * t[:, None]


def project(cameras: Cameras, cam: int, points: Float[Tensor, "n 3"]
            ) -> tuple[Float[Tensor, " n"], Float[Tensor, " n"], Float[Tensor, " n"]]:
    """Pixel coordinates (u, v) and camera-z depth of points in camera `cam` (pinhole; lens
    distortion ignored, which is fine for a visibility test with a tolerance)."""
    c2w = cameras.c2w[cam]
    p_cam = (points - c2w[:, 3]) @ c2w[:, :3]  # R^T (p - t)
    z = -p_cam[:, 2]
    safe = z.clamp_min(1e-6)
    u = cameras.fx_px[cam] * p_cam[:, 0] / safe + cameras.cx_px[cam]
    v = -cameras.fy_px[cam] * p_cam[:, 1] / safe + cameras.cy_px[cam]
    return u, v, z


def visibility_counts(points: Float[Tensor, "n 3"], cameras: Cameras, views: list[int],
                      depth_m: Float[Tensor, "v h w"], scale_factor: float, rel_tol: float = 0.03,
                      slack: float = 0.0) -> Int[Tensor, " n"]:
    """How many of `views` see each point: inside the image, in front of the camera, and not
    hidden — no deeper than that view's rendered depth, up to `rel_tol` (relative) plus `slack`
    (normalised units).

    `depth_m` holds each view's rendered camera-z depth in world units (`render_view`). Example:
    a point on a surface, or in the free space before it, counts; one behind it does not.
    """
    counts = torch.zeros(points.shape[0], dtype=torch.long)
    h, w = cameras.height, cameras.width
    slack_m = to_metres(torch.tensor(slack), scale_factor)
    for k, cam in enumerate(views):
        u, v, z = project(cameras, cam, points)
        inside = (z > 0) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
        col = u.clamp(0, w - 1).long()
        row = v.clamp(0, h - 1).long()
        surface = depth_m[k][row, col]
        counts += (inside & (to_metres(z, scale_factor) <= surface * (1 + rel_tol) + slack_m)).long()
    return counts


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
    the run's visibility grid (`lerf.query.visibility.VisibilityGrid`) says enough training views
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
