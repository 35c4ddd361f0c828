"""Ablation table + chart for a Hydra multirun sweep.

Usage (Hydra-style key=value arguments):
    python eval/ablations.py sweep=multirun/2024-05-01/12-00-00 [out=<dir>]
Writes <out>/ablations.md and <out>/ablations.png (out defaults to the sweep dir).
"""
import sys

from omegaconf import OmegaConf

from lerf.cli import run
from lerf.evaluation.ablations import summarize_sweep

KNOWN_KEYS = {"sweep", "out", "debug"}


def main(argv: list[str]) -> None:
    args = OmegaConf.from_dotlist(argv)
    unknown = set(args.keys()) - KNOWN_KEYS
    if "sweep" not in args or unknown:
        sys.exit(f"usage: python eval/ablations.py sweep=<multirun dir> [out=<dir>]"
                 + (f" (unknown: {', '.join(sorted(unknown))})" if unknown else ""))
    out = args.get("out")
    table, chart = summarize_sweep(str(args.sweep), None if out is None else str(out))
    print(f"wrote {table} and {chart}")


if __name__ == "__main__":
    run(lambda: main(sys.argv[1:]))
