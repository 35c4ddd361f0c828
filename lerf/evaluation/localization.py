"""Text-query localization: is the most relevant pixel inside the object's box?

Two protocols, same success rule, different maps:

* ``"lerf"`` (LERF paper §5, localization): a query succeeds when the pixel of highest relevancy
  in the rendered view lies inside the object's labelled bounding box. The raw map is used.
* ``"lerf_ovs"`` (LangSplat, ``eval/evaluate_iou_loc.py::lerf_localization``): the relevancy map
  is first smoothed with a 30x30 mean filter (``cv2.filter2D(map, -1, ones((30, 30)) / 900)``),
  then the same argmax-in-box rule is applied against every box of the category.

Details taken from LangSplat's ``lerf_localization`` (facts, reimplemented here):
  - all pixels equal to the (smoothed) maximum are candidates (``np.nonzero(map == max)``) and the
    query counts as a hit if any candidate is inside any box of the category;
  - a candidate is the pixel's (x=column, y=row) index, compared inclusively with the box corners
    after sorting them (``x_min <= x <= x_max`` and the same for y);
  - with several relevancy levels (LangSplat's three SAM levels) the level whose smoothed map has
    the highest maximum is used;
  - accuracy = hits / number of (frame, category) queries.
Pixel coordinates follow ``labels.py``: pixel (row i, column j) is the point (x=j, y=i).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from lerf.evaluation.report import grouped_means

Protocol = Literal["lerf", "lerf_ovs"]
Number = int | float
Boxes = Sequence[Sequence[Number]]  # [[x1, y1, x2, y2], ...] in pixels, corners in any order
LERF_OVS_SMOOTH_K = 30  # LangSplat evaluate_iou_loc.py: `scale = 30`, kernel ones((30, 30)) / 900


def reflect101_index(n: int, before: int, after: int) -> Int[Tensor, "m"]:
    """Source index for each position of a reflect-101 padded axis (OpenCV BORDER_REFLECT_101).

    Reflect-101 mirrors about the edge pixel without repeating it (``gfedcb|abcdefgh|gfedcba``);
    pads longer than the axis keep bouncing, with period 2(n-1), as OpenCV's ``borderInterpolate``.

    Example: n=4, before=3, after=2 -> [3, 2, 1, 0, 1, 2, 3, 2, 1].
    """
    positions = torch.arange(-before, n + after)
    if n == 1:
        return torch.zeros_like(positions)
    period = 2 * (n - 1)
    j = positions.remainder(period)
    return torch.where(j < n, j, period - j)


def mean_filter(image: Float[Tensor, "h w"], k: int) -> Float[Tensor, "h w"]:
    """k x k box mean, matching ``cv2.filter2D(image, -1, ones((k, k)) / k**2)`` with defaults.

    OpenCV's defaults (anchor (-1, -1) = kernel centre ``k // 2``; border ``BORDER_DEFAULT`` =
    ``BORDER_REFLECT_101``) put the window at offsets ``-(k // 2) .. k - 1 - k // 2`` around each
    pixel, so for even k (LangSplat's k=30) it reaches one pixel further up/left than down/right.
    Computed as two 1-D average pools over a reflect-101 padded copy.

    Example (1 x 3 image [0, 3, 6], k=3): padded [3, 0, 3, 6, 3] -> means [2, 3, 4].
    """
    h, w = image.shape
    before, after = k // 2, k - 1 - k // 2
    rows = reflect101_index(h, before, after).to(image.device)
    cols = reflect101_index(w, before, after).to(image.device)
    padded = image[rows][:, cols][None, None]
    smoothed = F.avg_pool2d(F.avg_pool2d(padded, (k, 1), stride=1), (1, k), stride=1)
    return smoothed[0, 0]


def argmax_pixels(image: Float[Tensor, "h w"]) -> Int[Tensor, "n 2"]:
    """(x, y) of every pixel equal to the maximum, in row-major order.

    Example: [[0, 5], [5, 1]] -> [[1, 0], [0, 1]].
    """
    ys, xs = torch.nonzero(image == image.max(), as_tuple=True)
    return torch.stack([xs, ys], dim=1)


def argmax_pixel(image: Float[Tensor, "h w"]) -> tuple[int, int]:
    """(x, y) of the first maximal pixel in row-major order. Example: [[0, 5], [5, 1]] -> (1, 0)."""
    x, y = argmax_pixels(image)[0].tolist()
    return x, y


def point_in_boxes(x: Number, y: Number, boxes: Boxes) -> bool:
    """Inside any box [x1, y1, x2, y2], edges included, corners in either order.

    Example: (4, 2) in [[0, 0, 4, 4]] -> True; (5, 2) -> False; (2, 2) in [[4, 4, 0, 0]] -> True.
    """
    for x1, y1, x2, y2 in boxes:
        if min(x1, x2) <= x <= max(x1, x2) and min(y1, y2) <= y <= max(y1, y2):
            return True
    return False


@dataclass(frozen=True)
class LocalizationResult:
    query: str
    view: str
    hit: bool
    x: int  # the chosen maximum pixel (first candidate inside a box if any, else the first)
    y: int
    level: int  # relevancy level used (0 when the map has no level axis)
    scene: str = ""
    query_level: str = ""  # the query's hierarchy level (part | object | group), "" if unlabelled


def localize(
    relevancy: Float[Tensor, "*levels h w"],
    boxes: Boxes,
    *,
    protocol: Protocol = "lerf_ovs",
    smooth_k: int = LERF_OVS_SMOOTH_K,
    query: str = "",
    view: str = "",
    scene: str = "",
    query_level: str = "",
) -> LocalizationResult:
    """Apply one protocol to one (view, query) pair. See the module docstring for the rules.

    ``relevancy`` is one map (h, w) or one per level (levels, h, w); ``smooth_k`` is only used by
    ``"lerf_ovs"``.
    """
    maps = relevancy if relevancy.dim() == 3 else relevancy[None]
    if protocol == "lerf_ovs":
        maps = torch.stack([mean_filter(m, smooth_k) for m in maps])
    elif protocol != "lerf":
        raise ValueError(f"unknown localization protocol {protocol!r}; use 'lerf' or 'lerf_ovs'")
    level = int(torch.argmax(maps.flatten(1).max(dim=1).values))
    candidates = argmax_pixels(maps[level]).tolist()
    inside = [(x, y) for x, y in candidates if point_in_boxes(x, y, boxes)]
    x, y = (inside or candidates)[0]
    return LocalizationResult(query, view, bool(inside), x, y, level, scene, query_level)


def _accuracy(hits: Sequence[bool | float]) -> float:
    """Share of hits (or mean of per-scene shares)."""
    return sum(hits) / len(hits)


def summarize_localization(results: Sequence[LocalizationResult]) -> dict:
    """Accuracies per query, per view, per scene, and pooled.

    ``overall`` pools every (scene, view, query) result, which for one scene is LangSplat's
    "Localization accuracy" (hits / number of queries); ``mean_over_scenes`` averages the
    per-scene accuracies (how papers report one number over several scenes).

    Example: hits [True, False] in view "a" and [True] in view "b" of one scene ->
    per_view {"a": 0.5, "b": 1.0}, overall 2/3. ``per_level`` pools the results of each query
    level (part / object / group) where the labels give one.
    """
    if not results:
        raise ValueError("no localization results to summarize")
    means = grouped_means(results, lambda r: r.hit, _accuracy)
    return {
        "overall": means.pop("pooled"),
        **means,
        "results": [asdict(r) for r in results],
    }
