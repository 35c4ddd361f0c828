"""Did the field learn what it was told? On each named part's training pixels, the field's
relevancy to the part's name against its supervision's, per physical scale (demo scene only;
lerf/demo/part_fit.py).

    python eval/part_fit.py run=<run dir> [pixels=2000] [seed=0] [out=<dir>] [overwrite=false]

Writes <out>/part_fit.json and part_fit.md (out defaults to the run dir) and prints the table.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from omegaconf import MISSING

from lerf.cli import parse_args, run
from lerf.demo.part_fit import format_part_fit, part_fit, write_part_fit
from lerf.query.outputs import check_writable
from lerf.query.run import load_run


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
    if args.pixels < 1:
        raise ValueError(f"pixels must be >= 1, got {args.pixels}")
    loaded = load_run(args.run, "cpu")
    out = Path(args.out) if args.out else loaded.run_dir
    check_writable([out / "part_fit.json", out / "part_fit.md"], args.overwrite)
    result = part_fit(loaded.model, loaded.scene, loaded.text_encoder(), loaded.cfg, pixels=args.pixels,
                      seed=args.seed)
    result["run"], result["step"] = str(loaded.run_dir), loaded.step
    write_part_fit(result, out)
    print(format_part_fit(result))


if __name__ == "__main__":
    run(main)
