"""Localization accuracy of a trained run: for every labelled view and every labelled object,
success when the relevancy argmax falls inside the object's box.

    python eval/localization.py run=<run dir> [labels=<dir>] [protocol=lerf|lerf_ovs]

protocol=lerf: the LERF paper's rule (§5) on the raw map; lerf_ovs: LangSplat's (30x30 mean
filter first). The scale is searched as in query.py. Writes <run>/localization.json and
localization.md.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from omegaconf import MISSING

from lerf.cli import parse_args, run
from lerf.evaluation.language_eval import evaluate_localization
from lerf.loading import load_run
from lerf.query_engine import QueryEngine


@dataclass
class LocalizationArgs:
    run: str = MISSING
    labels: Optional[str] = None  # default: the scene's labels/ folder
    protocol: str = "lerf"
    out: Optional[str] = None  # default: the run dir
    # LangSplat's 30x30 mean filter was set for ~1000-px renders; scale it for other sizes.
    smooth_k: int = 30
    device: str = "auto"
    chunk: int = 4096


def evaluate(args: LocalizationArgs) -> dict:
    loaded = load_run(args.run, args.device)
    engine = QueryEngine(loaded.model, loaded.text_encoder(), loaded.cfg.relevancy, args.chunk)
    out = Path(args.out) if args.out else loaded.run_dir
    return evaluate_localization(engine, loaded.scene, loaded.cfg.scene.name, out, args.labels, args.protocol,
                                 args.smooth_k)


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s")
    summary = evaluate(parse_args(LocalizationArgs, argv, usage=__doc__))
    print(f"localization ({summary['protocol']}): {summary['overall']:.3f} over {summary['num_queries']} queries")


if __name__ == "__main__":
    run(main)
