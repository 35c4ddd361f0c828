"""Localization accuracy of a trained run: for every labelled view and every labelled object,
success when the relevancy argmax falls inside the object's box.

    python eval/localization.py run=<run dir> [labels=<dir>] [protocol=lerf|lerf_ovs] [visibility_filter=false]

protocol=lerf: the LERF paper's rule (§5) on the raw map; lerf_ovs: LangSplat's (30x30 mean
filter first). The scale is searched as in query.py. Writes <run>/localization.json and
localization.md.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass


from lerf.cli import parse_args, run
from lerf.evaluation.language_eval import evaluate_localization
from lerf.evaluation.run_eval import LabelledEvalArgs, open_run


@dataclass
class LocalizationArgs(LabelledEvalArgs):
    protocol: str = "lerf"


def evaluate(args: LocalizationArgs) -> dict:
    engine, scene, name, out = open_run(args)
    return evaluate_localization(engine, scene, name, out, args.labels, args.protocol, args.smooth_k, args.levels)


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s")
    summary = evaluate(parse_args(LocalizationArgs, argv, usage=__doc__))
    print(f"localization ({summary['protocol']}): {summary['overall']:.3f} over {summary['num_queries']} queries")


if __name__ == "__main__":
    run(main)
