"""Ablation table + chart for a Hydra multirun sweep; the program behind eval/ablations.py.

    python eval/ablations.py sweep=multirun/2024-05-01/12-00-00 [out=<dir>]

Writes <out>/ablations.md and <out>/ablations.png (out defaults to the sweep dir).
"""
from __future__ import annotations

import sys
from typing import Optional, Sequence

from omegaconf import OmegaConf

from lerf.evaluation.ablations import summarize_sweep

KNOWN_KEYS = {"sweep", "out", "debug"}


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = OmegaConf.from_dotlist(list(sys.argv[1:] if argv is None else argv))
    unknown = set(args.keys()) - KNOWN_KEYS
    if "sweep" not in args or unknown:
        sys.exit("usage: python eval/ablations.py sweep=<multirun dir> [out=<dir>]"
                 + (f" (unknown: {', '.join(sorted(unknown))})" if unknown else ""))
    out = args.get("out")
    table, chart = summarize_sweep(str(args.sweep), None if out is None else str(out))
    print(f"wrote {table} and {chart}")
