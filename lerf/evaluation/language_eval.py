"""Localization and segmentation of a trained model on labelled views (used by eval/*.py and,
optionally, at the end of training so that sweeps report them)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import imageio.v3 as iio
import numpy as np
from tqdm import tqdm

from lerf.evaluation.localization import LERF_OVS_SMOOTH_K, localize, summarize_localization
from lerf.evaluation.report import write_report
from lerf.evaluation.run_eval import labelled_views, maps_at_label_size
from lerf.evaluation.segmentation import segment, summarize_segmentation
from lerf.query.engine import QueryEngine


LEVELS = ("chosen_scale", "all_scales")


def _labelled_maps(engine: QueryEngine, scene, labels: Optional[str], desc: str, levels: str):
    """Yield (view name, category, label, relevancy maps at the label's size) for every query.

    levels="chosen_scale" (default): the one map at LERF's own chosen scale (the highest raw
    peak, LERF §3.4); "all_scales": every searched scale as a protocol "level", so that the
    lerf_ovs protocol picks a scale again from its smoothed maps.
    """
    if levels not in LEVELS:
        raise ValueError(f"levels must be one of {LEVELS}, got '{levels}'")
    for frame, cam in tqdm(labelled_views(scene, labels), desc=desc, leave=False):
        view = Path(frame.frame_name).stem
        for category, label in frame.categories.items():
            q = engine.query(category, scene.cameras, cam)
            maps = q.maps if levels == "all_scales" else q.relevancy[None]
            yield frame, view, category, label, maps_at_label_size(maps, frame.height, frame.width)


def _localize(maps, label, category: str, view: str, scene_name: str, protocol: str, smooth_k: int):
    return localize(maps, label.boxes, protocol=protocol, smooth_k=smooth_k, query=category, view=view,
                    scene=scene_name, query_level=label.level)


def _segment(maps, frame, label, category: str, view: str, scene_name: str, threshold: float, smooth_k: int):
    return segment(maps, label.mask(frame.height, frame.width), threshold=threshold, smooth_k=smooth_k,
                   query=category, view=view, scene=scene_name, query_level=label.level)


def _write_localization(results: list, out_dir: Path, protocol: str, smooth_k: int, levels: str) -> dict:
    summary = summarize_localization(results)
    summary["protocol"], summary["levels"] = protocol, levels
    if protocol == "lerf_ovs":
        summary["smooth_k"] = smooth_k
    write_report(summary, out_dir / "localization.json", out_dir / "localization.md")
    return summary


def _write_segmentation(results: list, out_dir: Path, threshold: float, smooth_k: int, levels: str) -> dict:
    summary = summarize_segmentation(results)
    summary["threshold"], summary["smooth_k"], summary["levels"] = threshold, smooth_k, levels
    write_report(summary, out_dir / "segmentation.json", out_dir / "segmentation.md")
    return summary


def evaluate_localization(engine: QueryEngine, scene, scene_name: str, out_dir: Path,
                          labels: Optional[str] = None, protocol: str = "lerf", smooth_k: int = LERF_OVS_SMOOTH_K,
                          levels: str = "chosen_scale") -> dict:
    results = [_localize(maps, label, category, view, scene_name, protocol, smooth_k)
               for _, view, category, label, maps in _labelled_maps(engine, scene, labels, "localization", levels)]
    return _write_localization(results, out_dir, protocol, smooth_k, levels)


def evaluate_segmentation(engine: QueryEngine, scene, scene_name: str, out_dir: Path,
                          labels: Optional[str] = None, threshold: float = 0.4, save_masks: bool = False,
                          smooth_k: int = LERF_OVS_SMOOTH_K, levels: str = "chosen_scale") -> dict:
    results = []
    for frame, view, category, label, maps in _labelled_maps(engine, scene, labels, "segmentation", levels):
        result, pred = _segment(maps, frame, label, category, view, scene_name, threshold, smooth_k)
        results.append(result)
        if save_masks:
            folder = out_dir / "segmentation_masks"
            folder.mkdir(parents=True, exist_ok=True)
            safe = "".join(c if c.isalnum() else "_" for c in category)
            iio.imwrite(folder / f"{view}_{safe}.png", pred.numpy().astype(np.uint8) * 255)
    return _write_segmentation(results, out_dir, threshold, smooth_k, levels)


def evaluate_localization_and_segmentation(engine: QueryEngine, scene, scene_name: str, out_dir: Path,
                                           threshold: float = 0.4, smooth_k: int = LERF_OVS_SMOOTH_K,
                                           labels: Optional[str] = None, protocol: str = "lerf",
                                           levels: str = "chosen_scale") -> tuple[dict, dict]:
    """Both reports of `evaluate_localization` (LERF protocol unless `protocol` says) and
    `evaluate_segmentation`, from one pass over the labelled views.

    Why one pass: each view's query cache is then used for all of its queries and can be dropped
    before the next view (an engine with max_cached_views=1), instead of holding every labelled
    view's cache (~1 GB each on the 256-px demo) or rendering each view twice.
    """
    loc, seg = [], []
    for frame, view, category, label, maps in _labelled_maps(engine, scene, labels, "localization + segmentation",
                                                             levels):
        loc.append(_localize(maps, label, category, view, scene_name, protocol, smooth_k))
        seg.append(_segment(maps, frame, label, category, view, scene_name, threshold, smooth_k)[0])
    return (_write_localization(loc, out_dir, protocol, smooth_k, levels),
            _write_segmentation(seg, out_dir, threshold, smooth_k, levels))
