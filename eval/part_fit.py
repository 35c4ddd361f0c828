"""Did the field learn what it was told? On each named part's training pixels, the field's
relevancy to the part's name against its supervision's, per physical scale (demo scene only;
lerf/demo/part_fit.py).

    python eval/part_fit.py run=<run dir> [pixels=2000] [seed=0] [out=<dir>] [overwrite=false]

Writes <out>/part_fit.json and part_fit.md (out defaults to the run dir) and prints the table.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

from omegaconf import MISSING

from lerf.apps.cli import parse_args, run
from lerf.demo.part_fit import format_part_fit, part_fit_for_run


@dataclass
class PartFitArgs:
    run: str = MISSING
    pixels: int = 2000  # training pixels drawn per part
    seed: int = 0
    out: Optional[str] = None  # default: the run dir
    overwrite: bool = False


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s")
    args = parse_args(PartFitArgs, argv, usage=__doc__)
    result = part_fit_for_run(args.run, args.out, args.pixels, args.seed, args.overwrite)
    print(format_part_fit(result))


if __name__ == "__main__":
    run(main)
