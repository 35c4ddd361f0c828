"""Re-render a run's held-out views from its checkpoint and score them (PSNR, SSIM).

    python eval/render.py run=<run dir> [out=<dir>]

The program is lerf/apps/eval_render.py. Writes <out>/eval_render.json and PNGs under
<out>/eval_render/ (default out: the run dir).
"""
from lerf.apps.cli import run
from lerf.apps.eval_render import main

if __name__ == "__main__":
    run(main)
