"""Localization and segmentation of a trained model on labelled views (used by eval/*.py and,
optionally, at the end of training so that sweeps report them)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import imageio.v3 as iio
import numpy as np
from tqdm import tqdm

from lerf.evaluation.localization import localize, summarize_localization
from lerf.evaluation.report import write_report
from lerf.evaluation.run_eval import labelled_views, maps_at_label_size
from lerf.evaluation.segmentation import segment, summarize_segmentation
from lerf.query_engine import QueryEngine


def _labelled_maps(engine: QueryEngine, scene, labels: Optional[str], desc: str):
    """Yield (view name, category, label, relevancy maps at the label's size) for every query."""
    for frame, cam in tqdm(labelled_views(scene, labels), desc=desc, leave=False):
        view = Path(frame.frame_name).stem
        for category, label in frame.categories.items():
            q = engine.query(category, scene.cameras, cam)
            yield frame, view, category, label, maps_at_label_size(q.maps, frame.height, frame.width)


def evaluate_localization(engine: QueryEngine, scene, scene_name: str, out_dir: Path,
                          labels: Optional[str] = None, protocol: str = "lerf", smooth_k: int = 30) -> dict:
    results = [localize(maps, label.boxes, protocol=protocol, smooth_k=smooth_k, query=category, view=view,
                        scene=scene_name, query_level=label.level)
               for _, view, category, label, maps in _labelled_maps(engine, scene, labels, "localization")]
    summary = summarize_localization(results)
    summary["protocol"] = protocol
    if protocol == "lerf_ovs":
        summary["smooth_k"] = smooth_k
    write_report(summary, out_dir / "localization.json", out_dir / "localization.md")
    return summary


def evaluate_segmentation(engine: QueryEngine, scene, scene_name: str, out_dir: Path,
                          labels: Optional[str] = None, threshold: float = 0.4, save_masks: bool = False,
                          smooth_k: int = 30) -> dict:
    results = []
    for frame, view, category, label, maps in _labelled_maps(engine, scene, labels, "segmentation"):
        result, pred = segment(maps, label.mask(frame.height, frame.width), threshold=threshold, smooth_k=smooth_k,
                               query=category, view=view, scene=scene_name, query_level=label.level)
        results.append(result)
        if save_masks:
            folder = out_dir / "segmentation_masks"
            folder.mkdir(parents=True, exist_ok=True)
            safe = "".join(c if c.isalnum() else "_" for c in category)
            iio.imwrite(folder / f"{view}_{safe}.png", pred.numpy().astype(np.uint8) * 255)
    summary = summarize_segmentation(results)
    summary["threshold"], summary["smooth_k"] = threshold, smooth_k
    write_report(summary, out_dir / "segmentation.json", out_dir / "segmentation.md")
    return summary
