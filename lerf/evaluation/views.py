"""Novel-view evaluation: render held-out views, score PSNR/SSIM, write PNGs."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import imageio.v3 as iio
from tqdm import tqdm

from lerf.data.atomic import write_json
from lerf.data.scene import SceneData
from lerf.evaluation.image_metrics import psnr, ssim
from lerf.model import LerfModel
from lerf.model.render_view import render_view
from lerf.query.images import colorize, to_uint8
from lerf.query.outputs import check_writable
from lerf.query.run import load_run

log = logging.getLogger(__name__)


def evaluate_views(model: LerfModel, scene: SceneData, out_dir: Path, chunk: int = 4096) -> dict:
    """Render every held-out view; returns mean PSNR/SSIM and per-view numbers."""
    if not scene.eval_idx:
        raise ValueError(f"scene {scene.root} has no held-out view to score (scene.eval_every=0 trains on every "
                         "frame)")
    out_dir.mkdir(parents=True, exist_ok=True)
    per_view = {}
    for i in tqdm(scene.eval_idx, desc="eval views", leave=False):
        rendered = render_view(model, scene.cameras, i, chunk)
        gt = scene.image_float(i)
        pred = rendered["rgb"].clamp(0, 1)
        name = Path(scene.frame_names[i]).stem
        per_view[name] = {"psnr": float(psnr(pred, gt)), "ssim": float(ssim(pred, gt))}
        iio.imwrite(out_dir / f"{name}_rgb.png", to_uint8(pred))
        iio.imwrite(out_dir / f"{name}_gt.png", to_uint8(gt))
        iio.imwrite(out_dir / f"{name}_depth.png", to_uint8(colorize(rendered["depth_m"])))
    n = max(len(per_view), 1)
    result = {"psnr": sum(v["psnr"] for v in per_view.values()) / n,
              "ssim": sum(v["ssim"] for v in per_view.values()) / n,
              "num_views": len(per_view), "per_view": per_view}
    log.info("held-out views: PSNR %.2f dB, SSIM %.4f over %d views", result["psnr"], result["ssim"], len(per_view))
    return result


def rerender_run(run_dir: str | Path, out_dir: Optional[str | Path] = None, device: str = "auto", chunk: int = 4096,
                 overwrite: bool = False) -> tuple[dict, Path]:
    """A trained run's held-out views re-rendered from its checkpoint and scored: PNGs under
    <out>/eval_render/ and the scores in <out>/eval_render.json (out: the run dir by default; an
    earlier report is kept unless overwrite). Returns the scores and the JSON's path."""
    loaded = load_run(run_dir, device)
    out = Path(out_dir) if out_dir else loaded.run_dir
    target = out / "eval_render.json"
    check_writable([target], overwrite)
    result = evaluate_views(loaded.model, loaded.scene, out / "eval_render", chunk)
    result["steps"] = loaded.step
    write_json(target, result)
    return result, target
