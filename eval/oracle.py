"""The instrument's reference (demo scene): localization scored on the CLIP pyramid of each
labelled view itself (lerf/demo/oracle.py). Compare with the run's localization.json to
see what distillation loses.

    python eval/oracle.py run=<run dir> [labels=<dir>] [out=<dir>]

Writes <out>/oracle_localization.json and .md (out defaults to the run dir).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

from omegaconf import MISSING

from lerf.apps.cli import parse_args, run
from lerf.demo.oracle import oracle_for_run


@dataclass
class OracleArgs:
    run: str = MISSING
    labels: Optional[str] = None  # default: the scene's labels/ folder
    out: Optional[str] = None  # default: the run dir


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s")
    args = parse_args(OracleArgs, argv, usage=__doc__)
    summary = oracle_for_run(args.run, args.out, args.labels)
    levels = ", ".join(f"{k} {100 * v:.1f}%" for k, v in summary.get("per_level", {}).items())
    print(f"oracle localization: {100 * summary['overall']:.1f}% over {summary['num_queries']} queries ({levels})")


if __name__ == "__main__":
    run(main)
