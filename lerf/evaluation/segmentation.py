"""lerf_ovs open-vocabulary segmentation: relevancy map -> binary mask -> IoU with the label.

Steps, as in LangSplat's ``eval/evaluate_iou_loc.py::activate_stream`` (facts, reimplemented):
  1. blend: ``0.5 * (mean_filter(map, 30) + map)`` (the same 30x30 ``cv2.filter2D`` mean as the
     localization protocol);
  2. min-max normalise: ``(m - min) / (max(m - min) + 1e-9)``;
  3. map to [-1, 1] (``* 2 - 1``) and clip to [0, 1];
  4. threshold: ``> thresh`` (strict), ``thresh = 0.4`` (``eval.sh``: ``--mask_thresh 0.4``), so a
     pixel is foreground when its normalised value exceeds (1 + 0.4) / 2 = 0.7;
  5. mode filter over a 7x7 window (``eval/utils.py::smooth``, ``scale = 3``):
     ``argmax(bincount(window))``, so ties go to background. Its window is the slice
     ``[max(0, i-3) : min(i+4, h-1)]`` (and the same for columns): clipped at the image border and,
     because of the ``h-1`` / ``w-1`` bound, never containing the last row or column;
  6. IoU = |pred & gt| / |pred | gt| per (frame, category), the gt being the union of the
     category's polygons;
  7. with several relevancy levels, the IoU of the level whose *blended* map (step 1) has the
     highest maximum is kept;
  8. the scene's mIoU is the mean over all (frame, category) queries (``chosen_iou_all``).
"""
from __future__ import annotations

import math

from dataclasses import asdict, dataclass
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import Tensor

from lerf.evaluation.localization import LERF_OVS_SMOOTH_K, mean_filter
from lerf.evaluation.report import grouped_means

LERF_OVS_THRESHOLD = 0.4  # LangSplat eval/eval.sh: --mask_thresh 0.4
LERF_OVS_MODE_K = 7  # LangSplat eval/utils.py::smooth: scale = 3 -> 7x7 window


def blend_with_mean(relevancy: Float[Tensor, "h w"], k: int = LERF_OVS_SMOOTH_K) -> Float[Tensor, "h w"]:
    """0.5 * (k x k mean + raw): keeps edges while damping isolated spikes (step 1)."""
    return 0.5 * (mean_filter(relevancy, k) + relevancy)


def normalize_clip(relevancy: Float[Tensor, "h w"]) -> Float[Tensor, "h w"]:
    """Min-max normalise, map to [-1, 1], clip to [0, 1] (steps 2-3).

    Example: [0, 1, 2, 4] -> normalised [0, .25, .5, 1] -> [-1, -.5, 0, 1] -> [0, 0, 0, 1].
    """
    shifted = relevancy - relevancy.min()
    normalized = shifted / (shifted.max() + 1e-9)
    return torch.clip(normalized * 2.0 - 1.0, 0.0, 1.0)


def majority_filter(
    mask: Bool[Tensor, "h w"], k: int = LERF_OVS_MODE_K, *, exclude_last_row_col: bool = False
) -> Bool[Tensor, "h w"]:
    """Binary mode over a k x k window clipped at the border; ties -> False.

    A pixel becomes True when the window holds strictly more True than False pixels. Windows are
    clipped to the image (no padding), so border windows are smaller. ``exclude_last_row_col``
    reproduces LangSplat's ``smooth`` slice bounds (``min(i + s + 1, h - 1)``), which leave the last
    row and column out of every window. Computed with two box sums (no pixel loops).

    Example (k=3): a single True pixel in a False image -> all False; a 3x3 block of True in a
    5x5 image keeps its centre and edge-midpoints (5+ of 9 True) but drops its corners (4 of 9).
    """
    if k % 2 != 1:
        raise ValueError(f"mode filter window must be odd, got {k}")
    valid = torch.ones_like(mask, dtype=torch.float32)
    if exclude_last_row_col:
        valid[-1, :] = 0.0
        valid[:, -1] = 0.0
    ones = mask.to(torch.float32) * valid
    stacked = torch.stack([ones, valid])[:, None]  # 2 1 h w

    # zero padding + sum pooling == sums over the window clipped to the image (exact in float32
    # for windows below 2**24 pixels)
    sums = F.avg_pool2d(stacked, k, stride=1, padding=k // 2, count_include_pad=True) * (k * k)
    n_true, n_all = sums[0, 0].round(), sums[1, 0].round()
    return 2 * n_true > n_all


def mask_from_blended(
    blended: Float[Tensor, "h w"],
    *,
    threshold: float = LERF_OVS_THRESHOLD,
    mode_k: int = LERF_OVS_MODE_K,
) -> Bool[Tensor, "h w"]:
    """Steps 2-5 of the lerf_ovs protocol (module docstring) on an already blended map."""
    return majority_filter(normalize_clip(blended) > threshold, mode_k, exclude_last_row_col=True)


def relevancy_to_mask(
    relevancy: Float[Tensor, "h w"],
    *,
    threshold: float = LERF_OVS_THRESHOLD,
    smooth_k: int = LERF_OVS_SMOOTH_K,
    mode_k: int = LERF_OVS_MODE_K,
) -> Bool[Tensor, "h w"]:
    """Steps 1-5 of the lerf_ovs protocol for one map."""
    return mask_from_blended(blend_with_mean(relevancy, smooth_k), threshold=threshold, mode_k=mode_k)


def iou(pred: Bool[Tensor, "h w"], gt: Bool[Tensor, "h w"]) -> float:
    """|pred & gt| / |pred | gt|; NaN when both are empty (0 / 0, as in LangSplat's
    evaluation, which then leaves the pair out of every mean).

    Example: pred covers 4 pixels, gt 6, 3 shared -> 3 / 7.
    """
    pred, gt = torch.as_tensor(pred, dtype=torch.bool), torch.as_tensor(gt, dtype=torch.bool)
    union = int((pred | gt).sum())
    return float("nan") if union == 0 else int((pred & gt).sum()) / union


def _mean(values: Sequence[float]) -> float:
    """Mean over the defined IoUs (NaN pairs left out); NaN when none is defined."""
    kept = [v for v in values if not math.isnan(v)]
    return float(np.mean(kept)) if kept else float("nan")


@dataclass(frozen=True)
class SegmentationResult:
    query: str
    view: str
    iou: float
    level: int
    scene: str = ""
    query_level: str = ""  # the query's hierarchy level (part | object | group), "" if unlabelled


def segment(
    relevancy: Float[Tensor, "*levels h w"],
    gt_mask: Bool[Tensor, "h w"] | Bool[np.ndarray, "h w"],
    *,
    threshold: float = LERF_OVS_THRESHOLD,
    smooth_k: int = LERF_OVS_SMOOTH_K,
    mode_k: int = LERF_OVS_MODE_K,
    query: str = "",
    view: str = "",
    scene: str = "",
    query_level: str = "",
) -> tuple[SegmentationResult, Bool[Tensor, "h w"]]:
    """lerf_ovs segmentation of one (view, query): the result and the predicted mask."""
    maps = relevancy if relevancy.dim() == 3 else relevancy[None]
    blended = torch.stack([blend_with_mean(m, smooth_k) for m in maps])
    level = int(torch.argmax(blended.flatten(1).max(dim=1).values))  # step 7
    pred = mask_from_blended(blended[level], threshold=threshold, mode_k=mode_k)
    gt = torch.as_tensor(np.asarray(gt_mask) if not isinstance(gt_mask, Tensor) else gt_mask)
    return SegmentationResult(query, view, iou(pred, gt.to(pred.device)), level, scene, query_level), pred


def summarize_segmentation(results: Sequence[SegmentationResult]) -> dict:
    """mIoU pooled over all queries, per scene, and mean IoU per category and per view.

    Example: IoUs 0.5 and 1.0 for "cup" in two views and 0.0 for "bowl" -> per_category
    {"cup": 0.75, "bowl": 0.0}, miou (pooled over the 3 queries) 0.5. A NaN IoU (prediction and
    label both empty) is left out of every mean and counted in `num_undefined`. ``per_level`` is the mIoU
    of each query level (part / object / group) where the labels give one.
    """
    if not results:
        raise ValueError("no segmentation results to summarize")
    means = grouped_means(results, lambda r: r.iou, _mean)
    return {
        "miou": means["pooled"],
        **{k: means[k] for k in ("per_level", "num_per_level", "mean_over_scenes", "num_queries")},
        "num_undefined": sum(math.isnan(r.iou) for r in results),
        **{k: means[k] for k in ("per_scene", "per_view")},
        "per_category": means["per_query"],
        # JSON has no NaN: an undefined IoU is written as null.
        "results": [{**asdict(r), "iou": None if math.isnan(r.iou) else r.iou} for r in results],
    }
