"""Re-render a run's held-out views from its checkpoint and score them (PSNR, SSIM); the program
behind eval/render.py.

    python eval/render.py run=<run dir> [out=<dir>]

Writes <out>/eval_render.json and PNGs under <out>/eval_render/ (default out: the run dir);
the eval.json written at the end of training is left untouched.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional, Sequence

from omegaconf import MISSING

from lerf.apps.cli import parse_args
from lerf.evaluation.views import rerender_run


@dataclass
class RenderArgs:
    run: str = MISSING
    out: Optional[str] = None
    device: str = "auto"
    chunk: int = 4096
    overwrite: bool = False


def main(argv: Optional[Sequence[str]] = None) -> None:
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s")
    args = parse_args(RenderArgs, argv, usage=__doc__)
    result, target = rerender_run(args.run, args.out, args.device, args.chunk, args.overwrite)
    print(f"PSNR {result['psnr']:.2f} dB, SSIM {result['ssim']:.4f} over {result['num_views']} views -> {target}")
