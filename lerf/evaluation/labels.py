"""Reader for the lerf_ovs ground-truth labels (LabelMe-style JSON, one file per labelled frame).

The files released with LangSplat (``lerf_ovs/label/<scene>/frame_XXXXX.json``, scenes figurines,
ramen, teatime, waldo_kitchen) look like this (keys as found in the released files; the readers
only need the ones marked *)::

    {"info": {"name"*: "frame_00002.jpg", "width"*: 988, "height"*: 730, "depth": 3, "note": ""},
     "objects"*: [{"category"*: "stuffed bear", "group": 1,
                   "segmentation"*: [[786.0, 2.0], [780.0, 3.0], ...],      # one polygon, (x, y)
                   "area": 1442.03, "layer": 10.0,
                   "bbox"*: [388.0, 265.0, 456.0, 301.0],                  # x1, y1, x2, y2
                   "iscrowd": 0, "note": ""}, ...]}

The demo scene adds a "level" key to each object (part | object | group: a query's level in the
part/object/group hierarchy); it is optional and per category (the first object's value wins).

Several objects can share a category (e.g. two "sake cup"s); like LangSplat's
``eval/evaluate_iou_loc.py::eval_gt_lerfdata`` we merge them: the category keeps every box (a query
is localised if it hits any of them) and its mask is the union of the polygons.

Pixel convention (shared with ``localization.py``): pixel (row i, column j) is the point
(x=j, y=i) of the label coordinates, i.e. integer coordinates sit on pixel centres, as in LabelMe,
OpenCV and LangSplat's box test, which compares integer pixel indices with box corners.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from jaxtyping import Bool, Float
from matplotlib.path import Path as MplPath

Box = tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels (see module docstring)


class LabelFormatError(ValueError):
    """A label file is missing or does not have the lerf_ovs/LabelMe layout."""


@dataclass(frozen=True)
class CategoryLabel:
    boxes: list[Box]
    polygons: list[Float[np.ndarray, "_ 2"]]  # (x, y) vertices, one array per labelled object
    level: str = ""  # part | object | group where the labels say (the demo scene), else ""

    def mask(self, height: int, width: int) -> Bool[np.ndarray, "h w"]:
        """Union of this category's polygons as a boolean image."""
        return rasterize_polygons(self.polygons, height, width)


@dataclass(frozen=True)
class FrameLabels:
    frame_name: str  # image file name from info.name, e.g. "frame_00041.jpg"
    height: int
    width: int
    categories: dict[str, CategoryLabel]

    @property
    def frame_number(self) -> int:
        """The number in the file name: "frame_00041.jpg" -> 41.

        The lerf_ovs frames are numbered from 1; LangSplat indexes its renders with
        ``frame_number - 1`` (``eval_gt_lerfdata``).
        """
        match = re.search(r"(\d+)", Path(self.frame_name).stem)
        if match is None:
            raise LabelFormatError(f"frame name {self.frame_name!r} has no frame number")
        return int(match.group(1))


def load_label_dir(path: str | Path) -> list[FrameLabels]:
    """Read every ``frame_*.json`` in a scene's label folder, sorted by file name."""
    path = Path(path)
    if not path.is_dir():
        raise LabelFormatError(f"{path}: expected a folder of frame_*.json label files")
    files = sorted(path.glob("frame_*.json"))
    if not files:
        raise LabelFormatError(f"{path}: no frame_*.json label files found")
    return [load_label_file(f) for f in files]


def load_label_file(path: str | Path) -> FrameLabels:
    """Read one LabelMe-style frame label file; raise ``LabelFormatError`` naming what is wrong."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise LabelFormatError(f"{path}: label file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise LabelFormatError(f"{path}: not valid JSON ({err})") from None

    def fail(what: str) -> LabelFormatError:
        return LabelFormatError(f"{path}: expected {what}")

    info = data.get("info") if isinstance(data, dict) else None
    if not isinstance(info, dict):
        raise fail('a JSON object with an "info" object')
    try:
        name, height, width = str(info["name"]), int(info["height"]), int(info["width"])
    except (KeyError, TypeError, ValueError):
        raise fail('"info" with "name", "height" and "width"') from None
    objects = data.get("objects")
    if not isinstance(objects, list):
        raise fail('an "objects" list')

    boxes: dict[str, list[Box]] = {}
    polygons: dict[str, list[np.ndarray]] = {}
    levels: dict[str, str] = {}
    for k, obj in enumerate(objects):
        if not isinstance(obj, dict) or not isinstance(obj.get("category"), str):
            raise fail(f'objects[{k}] to have a "category" string')
        category = obj["category"]
        try:
            box = tuple(float(v) for v in np.asarray(obj["bbox"], dtype=float).reshape(4))
        except (KeyError, TypeError, ValueError):
            raise fail(f'objects[{k}] ({category!r}) to have "bbox" [x1, y1, x2, y2]') from None
        try:
            object_polygons = _parse_segmentation(obj["segmentation"])
        except (KeyError, TypeError, ValueError):
            raise fail(
                f'objects[{k}] ({category!r}) to have "segmentation" as a list of [x, y] points '
                "(or a list of such lists), at least 3 points each"
            ) from None
        boxes.setdefault(category, []).append(box)  # type: ignore[arg-type]
        polygons.setdefault(category, []).extend(object_polygons)
        levels.setdefault(category, str(obj.get("level", "")))

    categories = {c: CategoryLabel(boxes=boxes[c], polygons=polygons[c], level=levels[c]) for c in boxes}
    return FrameLabels(frame_name=name, height=height, width=width, categories=categories)


def _parse_segmentation(seg) -> list[np.ndarray]:
    """[[x, y], ...] (the released files) or [[[x, y], ...], ...] (several parts) -> (n, 2) arrays."""
    if not isinstance(seg, list) or not seg:
        raise ValueError("segmentation must be a non-empty list")
    nested = isinstance(seg[0], list) and bool(seg[0]) and isinstance(seg[0][0], list)
    parts = [np.asarray(p, dtype=float) for p in (seg if nested else [seg])]
    for part in parts:
        if part.ndim != 2 or part.shape[1] != 2 or part.shape[0] < 3:
            raise ValueError("polygon needs at least 3 (x, y) points")
    return parts


def rasterize_polygons(
    polygons: list[Float[np.ndarray, "_ 2"]], height: int, width: int
) -> Bool[np.ndarray, "h w"]:
    """Union of filled polygons, boundary included, on the pixel-centre lattice (x=j, y=i).

    Follows LangSplat's ``eval/utils.py::polygon_to_mask`` (``np.int32`` cast of the vertices,
    then ``cv2.fillPoly``) without OpenCV: vertices are truncated to integers, a pixel is set if
    its centre is inside the polygon (``matplotlib.path.Path.contains_points``) or on the digital
    line of an edge (one pixel per step along the edge's major axis, the minor coordinate rounded,
    as an 8-connected line drawing does). Boundary pixels may differ from OpenCV's by rounding.

    Example: the triangle (0, 0), (4, 0), (0, 4) on a 5x5 image sets the 15 pixels with
    x + y <= 4 (10 strictly inside or on the two axis edges, plus the 5 on the hypotenuse).
    """
    mask = np.zeros((height, width), dtype=bool)
    for polygon in polygons:
        vertices = np.trunc(np.asarray(polygon, dtype=float))  # == np.int32 cast (coords >= 0)
        x_lo, y_lo = np.maximum(vertices.min(axis=0), 0).astype(int)
        x_hi, y_hi = np.minimum(vertices.max(axis=0), [width - 1, height - 1]).astype(int)
        if x_lo <= x_hi and y_lo <= y_hi:
            ys, xs = np.mgrid[y_lo : y_hi + 1, x_lo : x_hi + 1]
            centres = np.stack([xs.ravel(), ys.ravel()], axis=1)
            inside = MplPath(vertices).contains_points(centres)
            mask[y_lo : y_hi + 1, x_lo : x_hi + 1] |= inside.reshape(xs.shape)
        xs_edge, ys_edge = _edge_pixels(vertices)
        keep = (xs_edge >= 0) & (xs_edge < width) & (ys_edge >= 0) & (ys_edge < height)
        mask[ys_edge[keep], xs_edge[keep]] = True
    return mask


def _edge_pixels(vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of the closed polyline through integer vertices, one per unit step of each edge."""
    xs, ys = [], []
    for p0, p1 in zip(vertices, np.roll(vertices, -1, axis=0)):
        steps = int(max(abs(p1[0] - p0[0]), abs(p1[1] - p0[1])))
        t = np.linspace(0.0, 1.0, steps + 1)
        # floor(v + 0.5): round half up, the same way in every direction
        xs.append(np.floor(p0[0] + t * (p1[0] - p0[0]) + 0.5).astype(int))
        ys.append(np.floor(p0[1] + t * (p1[1] - p0[1]) + 0.5).astype(int))
    return np.concatenate(xs), np.concatenate(ys)
