"""Open-vocabulary segmentation of a trained run, lerf_ovs protocol (LangSplat): relevancy
blended with its 30x30 mean, normalised, thresholded (0.4), 7x7 mode filter; IoU per category,
mIoU per scene.

    python eval/segmentation.py run=<run dir> [labels=<dir>] [threshold=0.4]

Writes <run>/segmentation.json and segmentation.md (and predicted masks with masks=true).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass


from lerf.cli import parse_args, run
from lerf.evaluation.language_eval import evaluate_segmentation
from lerf.evaluation.run_eval import LabelledEvalArgs, open_run


@dataclass
class SegmentationArgs(LabelledEvalArgs):
    threshold: float = 0.4
    masks: bool = False  # also write the predicted masks as PNGs


def evaluate(args: SegmentationArgs) -> dict:
    engine, scene, name, out = open_run(args)
    return evaluate_segmentation(engine, scene, name, out, args.labels, args.threshold, args.masks, args.smooth_k,
                                 args.levels)


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s")
    summary = evaluate(parse_args(SegmentationArgs, argv, usage=__doc__))
    print(f"segmentation mIoU: {summary['miou']:.3f}")


if __name__ == "__main__":
    run(main)
