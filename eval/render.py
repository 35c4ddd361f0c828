"""Re-render a run's held-out views from its checkpoint and score them (PSNR, SSIM).

    python eval/render.py run=<run dir> [out=<dir>]

Writes <out>/eval_render.json and PNGs under <out>/eval_render/ (default out: the run dir);
the eval.json written at the end of training is left untouched.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from omegaconf import MISSING

from lerf.cli import parse_args, run
from lerf.data.atomic import write_json
from lerf.evaluation.views import evaluate_views
from lerf.query.outputs import check_writable
from lerf.query.run import load_run


@dataclass
class RenderArgs:
    run: str = MISSING
    out: Optional[str] = None
    device: str = "auto"
    chunk: int = 4096
    overwrite: bool = False


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s")
    args = parse_args(RenderArgs, argv, usage=__doc__)
    loaded = load_run(args.run, args.device)
    out = Path(args.out) if args.out else loaded.run_dir
    target = out / "eval_render.json"
    check_writable([target], args.overwrite)
    result = evaluate_views(loaded.model, loaded.scene, out / "eval_render", args.chunk)
    result["steps"] = loaded.step
    write_json(target, result)
    print(f"PSNR {result['psnr']:.2f} dB, SSIM {result['ssim']:.4f} over {result['num_views']} views -> {target}")


if __name__ == "__main__":
    run(main)
