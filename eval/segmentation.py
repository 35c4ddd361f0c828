"""Open-vocabulary segmentation of a trained run, lerf_ovs protocol (LangSplat): IoU per
category, mIoU per scene.

    python eval/segmentation.py run=<run dir> [labels=<dir>] [threshold=0.4] [masks=false]

The program is lerf/apps/eval_language.py. Writes <run>/segmentation.json and segmentation.md.
"""
from lerf.apps.cli import run
from lerf.apps.eval_language import segmentation_main as main

if __name__ == "__main__":
    run(main)
