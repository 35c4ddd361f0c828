"""The language protocols' programs (eval/localization.py, eval/segmentation.py): open a trained
run, score its relevancy maps against the label files, write the reports into the run.

    python eval/localization.py run=<run dir> [labels=<dir>] [protocol=lerf|lerf_ovs] [visibility_filter=false]
    python eval/segmentation.py run=<run dir> [labels=<dir>] [threshold=0.4] [masks=false]

protocol=lerf: the LERF paper's rule (§5) on the raw map; lerf_ovs: LangSplat's (30x30 mean
filter first). Segmentation follows lerf_ovs (LangSplat): relevancy blended with its 30x30 mean,
normalised, thresholded (0.4), 7x7 mode filter; IoU per category, mIoU per scene. The scale is
searched as in query.py.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from lerf.apps.cli import parse_args
from lerf.evaluation.language_eval import evaluate_localization, evaluate_segmentation
from lerf.evaluation.run_eval import LabelledEvalArgs, open_run


@dataclass
class LocalizationArgs(LabelledEvalArgs):
    protocol: str = "lerf"


@dataclass
class SegmentationArgs(LabelledEvalArgs):
    threshold: float = 0.4
    masks: bool = False  # also write the predicted masks as PNGs


def localization(args: LocalizationArgs) -> dict:
    """Writes <run>/localization.json and localization.md; returns the summary."""
    engine, scene, name, out = open_run(args)
    return evaluate_localization(engine, scene, name, out, args.labels, args.protocol, args.smooth_k, args.levels)


def segmentation(args: SegmentationArgs) -> dict:
    """Writes <run>/segmentation.json and segmentation.md (and masks with masks=true)."""
    engine, scene, name, out = open_run(args)
    return evaluate_segmentation(engine, scene, name, out, args.labels, args.threshold, args.masks, args.smooth_k,
                                 args.levels)


def _program(schema: type, evaluate: Callable[..., dict], line: Callable[[dict], str],
             argv: Optional[Sequence[str]]) -> dict:
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s")
    summary = evaluate(parse_args(schema, argv, usage=__doc__))
    print(line(summary))
    return summary


def localization_main(argv: Optional[Sequence[str]] = None) -> dict:
    return _program(LocalizationArgs, localization, lambda s: f"localization ({s['protocol']}): {s['overall']:.3f} "
                    f"over {s['num_queries']} queries", argv)


def segmentation_main(argv: Optional[Sequence[str]] = None) -> dict:
    return _program(SegmentationArgs, segmentation, lambda s: f"segmentation mIoU: {s['miou']:.3f}", argv)
