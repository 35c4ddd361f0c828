"""Open-vocabulary segmentation of a trained run, lerf_ovs protocol (LangSplat): relevancy
blended with its 30x30 mean, normalised, thresholded (0.4), 7x7 mode filter; IoU per category,
mIoU per scene.

    python eval/segmentation.py run=<run dir> [labels=<dir>] [threshold=0.4]

Writes <run>/segmentation.json and segmentation.md (and predicted masks with masks=true).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import imageio.v3 as iio
import numpy as np
from omegaconf import MISSING
from tqdm import tqdm

from lerf.cli import parse_args
from lerf.evaluation.report import write_report
from lerf.evaluation.run_eval import labelled_views, maps_at_label_size
from lerf.evaluation.segmentation import segment, summarize_segmentation
from lerf.loading import load_run
from lerf.query_engine import QueryEngine
from lerf.query_outputs import prompt_dirname


@dataclass
class SegmentationArgs:
    run: str = MISSING
    labels: Optional[str] = None
    threshold: float = 0.4
    out: Optional[str] = None
    masks: bool = False  # also write the predicted masks as PNGs
    device: str = "auto"
    chunk: int = 4096


def evaluate(args: SegmentationArgs) -> dict:
    loaded = load_run(args.run, args.device)
    engine = QueryEngine(loaded.model, loaded.text_encoder(), loaded.cfg.relevancy, args.chunk)
    out = Path(args.out) if args.out else loaded.run_dir
    results = []
    for frame, cam in tqdm(labelled_views(loaded.scene, args.labels), desc="segmentation"):
        view = Path(frame.frame_name).stem
        for category, label in frame.categories.items():
            q = engine.query(category, loaded.scene.cameras, cam)
            maps = maps_at_label_size(q.maps, frame.height, frame.width)
            result, pred = segment(maps, label.mask(frame.height, frame.width), threshold=args.threshold,
                                   query=category, view=view, scene=loaded.cfg.scene.name)
            results.append(result)
            if args.masks:
                (out / "segmentation_masks").mkdir(parents=True, exist_ok=True)
                iio.imwrite(out / "segmentation_masks" / f"{view}_{prompt_dirname(category)}.png",
                            pred.numpy().astype(np.uint8) * 255)
    summary = summarize_segmentation(results)
    summary["threshold"] = args.threshold
    write_report(summary, out / "segmentation.json", out / "segmentation.md")
    return summary


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s")
    summary = evaluate(parse_args(SegmentationArgs, argv, usage=__doc__))
    print(f"segmentation mIoU: {summary['miou']:.3f}")


if __name__ == "__main__":
    main()
