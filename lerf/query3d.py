"""3D queries: relevant surface points from several views, kept only where enough training
views actually see them (visibility filtering; the authors' code has no such step, so floaters
seen from a single view survive there)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from lerf.data.cameras import Cameras, camera_rays, image_pixels
from lerf.renderer import colorize, render_view

# The 3D query's defaults (query.py ply=true and the viewer's "3D" button): relevancy above 0.6 on
# the selected views, seen by at least 5 training views (LERF's 3D query).
PLY_THRESHOLD = 0.6
PLY_MIN_VIEWS = 5


def backproject(cameras: Cameras, cam: int, depth_m: Float[Tensor, "h w"], scale_factor: float
                ) -> Float[Tensor, "n 3"]:
    """Surface points of every pixel in normalised scene coordinates, from camera-z depth (metres)."""
    u, v = image_pixels(cameras.width, cameras.height)
    origins, dirs, z_per_t = camera_rays(cameras, torch.full_like(u, cam, dtype=torch.long), u, v)
    t = depth_m.reshape(-1) * scale_factor / z_per_t
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
                      depth_z: Float[Tensor, "v h w"], rel_tol: float = 0.03) -> Int[Tensor, " n"]:
    """How many of `views` see each point: inside the image, in front of the camera, and not
    hidden — its depth agrees with that view's rendered depth within `rel_tol`.

    `depth_z` holds camera-z depth in normalised units. Example: a point on a surface that a view
    renders at the same depth counts; one behind that surface does not.
    """
    counts = torch.zeros(points.shape[0], dtype=torch.long)
    h, w = cameras.height, cameras.width
    for k, cam in enumerate(views):
        u, v, z = project(cameras, cam, points)
        inside = (z > 0) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
        col = u.clamp(0, w - 1).long()
        row = v.clamp(0, h - 1).long()
        surface = depth_z[k][row, col]
        counts += (inside & ((z - surface).abs() <= rel_tol * z.abs())).long()
    return counts


def keep_visible(counts: Int[Tensor, " n"], min_views: int) -> Bool[Tensor, " n"]:
    """LERF's 3D query keeps points seen by at least `min_views` training views (5 by default)."""
    return counts >= min_views


@dataclass
class RelevantPoints:
    """The 3D answer to a prompt: what `query.py ply=true` writes and the viewer's "3D" shows."""

    points: Float[Tensor, "n 3"]  # normalised scene frame (the cameras' frame)
    colors: Float[Tensor, "n 3"]  # turbo of relevancy over [0.5, 1]
    values: Float[Tensor, " n"]  # relevancy
    candidates: int  # relevant surface points before the visibility filter

    def world(self, scale_factor: float, center_world: Float[Tensor, "3"]) -> Float[Tensor, "n 3"]:
        """Undo the scene normalisation (metres on LERF captures and the demo)."""
        return self.points / scale_factor + center_world


def training_depths(model, cameras: Cameras, views: list[int], chunk: int) -> Float[Tensor, "v h w"]:
    """Rendered camera-z depth of `views` in normalised units: the visibility test's reference."""
    scale = model.geometry.scale_factor
    return torch.stack([render_view(model, cameras, c, chunk)["depth_m"] * scale for c in views])


def relevant_points(engine, cameras: Cameras, prompt: str, views: list[int], train_views: list[int],
                    train_depth: Float[Tensor, "v h w"], threshold: float, min_views: int) -> RelevantPoints:
    """Surface points of `views` whose relevancy exceeds `threshold` (on opaque pixels), kept when
    at least `min_views` of `train_views` see them (LERF's 3D query plus visibility filtering)."""
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
    visible = keep_visible(visibility_counts(pts, cameras, train_views, train_depth), min_views)
    return RelevantPoints(pts[visible], cols[visible], vals[visible], pts.shape[0])
