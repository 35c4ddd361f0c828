"""Ablation table + chart for a Hydra multirun sweep.

    python eval/ablations.py sweep=multirun/2024-05-01/12-00-00 [out=<dir>]

The program is lerf/apps/eval_ablations.py. Writes <out>/ablations.md and <out>/ablations.png
(out defaults to the sweep dir).
"""
from lerf.apps.cli import run
from lerf.apps.eval_ablations import main

if __name__ == "__main__":
    run(main)
