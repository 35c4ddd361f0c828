"""Visibility filtering (LERF §3.4: "discard samples observed by insufficient training views").

After training, one grid over the hash grid's unit cube counts, per cell, the training views that
see the cell's centre: inside the view's frustum and not hidden behind that view's rendered
depth. Queries look a sample up in the grid, so their cost does not grow with the number of
training views; a sample whose cell fewer than `min_views` views saw adds no relevancy. 2D maps,
evaluation, videos, the viewer and the `.ply` export all use the same grid.
"""
from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from tqdm import tqdm

from lerf.config import RelevancyConfig
from lerf.data.atomic import replace_atomically
from lerf.data.cameras import Cameras, project
from lerf.data.contraction import from_unit_cube
from lerf.data.units import to_metres
from lerf.model.render_view import render_view

log = logging.getLogger(__name__)

VISIBILITY_FILE = "visibility.pt"
# A cell counts as seen when it is no deeper than the view's rendered (expected) depth plus this
# relative tolerance and this many cells: expected depth sits in front of a soft surface.
REL_TOL = 0.1
SLACK_CELLS = 2.0


@dataclass
class VisibilityGrid:
    counts: Int[Tensor, "g g g"]  # training views that see each cell (x fastest along the last axis)
    min_views: int

    def visible(self, x_unit: Float[Tensor, "n 3"]) -> Bool[Tensor, " n"]:
        """Whether at least `min_views` training views saw the cell of each unit-cube position."""
        g = self.counts.shape[0]
        cell = (x_unit.clamp(0.0, 1.0) * g).long().clamp_max(g - 1)
        counts = self.counts.to(x_unit.device)
        return counts[cell[:, 2], cell[:, 1], cell[:, 0]] >= self.min_views


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


def cell_centres(resolution: int) -> Float[Tensor, "n 3"]:
    """Unit-cube centres of a resolution^3 grid, x fastest. Example: resolution 2 -> 0.25 / 0.75."""
    axis = (torch.arange(resolution, dtype=torch.float32) + 0.5) / resolution
    z, y, x = torch.meshgrid(axis, axis, axis, indexing="ij")
    return torch.stack([x, y, z], -1).reshape(-1, 3)


def visibility_grid_counts(model, cameras: Cameras, views: list[int], resolution: int, max_px: int,
                           chunk: int = 4096) -> Int[Tensor, "g g g"]:
    """Count, for every cell centre, the `views` that see it, from depths rendered at most
    `max_px` on the long side (a visibility test needs no full-resolution depth)."""
    small = cameras.within(max_px)
    geometry = model.geometry
    points = from_unit_cube(cell_centres(resolution), geometry.bounded, geometry.bound)
    # A cell is seen when any of it may be in front of the surface: allow one cell of slack
    # (cells span 2·bound/resolution normalised units, or 4/resolution before contraction).
    cell = 2.0 * geometry.bound / resolution if geometry.bounded else 4.0 / resolution
    counts = torch.zeros(points.shape[0], dtype=torch.int32)
    for cam in tqdm(views, desc="visibility grid", leave=False):
        depth_m = render_view(model, small, cam, chunk)["depth_m"]
        counts += visibility_counts(points, small, [cam], depth_m[None], geometry.scale_factor,
                                    rel_tol=REL_TOL, slack=SLACK_CELLS * cell).int()
    return counts.reshape(resolution, resolution, resolution)


def build_visibility(model, cameras: Cameras, views: list[int], cfg: RelevancyConfig, chunk: int = 4096
                     ) -> VisibilityGrid:
    counts = visibility_grid_counts(model, cameras, views, cfg.visibility_resolution, cfg.visibility_max_px, chunk)
    return VisibilityGrid(counts, cfg.visibility_min_views)


def save_visibility(grid: VisibilityGrid, run_dir: Path) -> Path:
    path = Path(run_dir) / VISIBILITY_FILE
    counts = grid.counts.to(torch.int16)
    return replace_atomically(path, lambda tmp: torch.save({"counts": counts}, tmp), counts.numel() * 2 + 4096)


def load_visibility(run_dir: Path, min_views: int) -> Optional[VisibilityGrid]:
    """The run's stored grid, or None when training did not write one (e.g. it was interrupted) or
    the file is damaged (truncated, emptied): the caller then builds the grid from the checkpoint."""
    path = Path(run_dir) / VISIBILITY_FILE
    if not path.is_file():
        return None
    try:
        counts = torch.load(path, weights_only=True)["counts"]
        if counts.ndim != 3 or len(set(counts.shape)) != 1:
            raise ValueError(f"counts of shape {tuple(counts.shape)}, expected a cube")
    except (RuntimeError, EOFError, ValueError, KeyError, TypeError, pickle.UnpicklingError) as err:
        log.warning("%s is damaged (%s: %s); ignoring it: the grid is built again from the checkpoint",
                    path, type(err).__name__, " ".join(str(err).split())[:120] or "empty file")
        return None
    return VisibilityGrid(counts.int(), min_views)
