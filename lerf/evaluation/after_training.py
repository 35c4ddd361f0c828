"""The end-of-training evaluation, as one narrow function the entry point hands to the trainer
(training never imports evaluation): held-out views, then localization and segmentation when
the scene has labels (the demo does), so that sweeps report them."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from lerf.config import TrainConfig
from lerf.data.scene import SceneData
from lerf.evaluation.language_eval import evaluate_localization_and_segmentation
from lerf.evaluation.poses import pose_errors
from lerf.evaluation.views import evaluate_views
from lerf.model import LerfModel
from lerf.model.visibility import load_visibility
from lerf.query.engine import QueryEngine

log = logging.getLogger(__name__)


def evaluate_trained(model: LerfModel, scene: SceneData, text_encoder: Optional[object], cfg: TrainConfig,
                     run_dir: Path) -> dict:
    """PSNR/SSIM of the held-out views (PNGs under run_dir/eval) and, with labels and a language
    field, localization (LERF protocol) and segmentation (lerf_ovs) written into run_dir; on the
    noisy demo also the error of the fitted training poses against the true ones."""
    summary = evaluate_views(model, scene, run_dir / "eval", cfg.trainer.eval_chunk)
    poses = pose_errors(scene)
    if poses is not None:
        summary["pose_error"] = poses
        log.info("training poses vs truth: %.3f deg, %.2f mm", poses["rotation_deg"], 1e3 * poses["translation_m"])
    if cfg.trainer.eval_language and text_encoder is not None and scene.labels_dir is not None:
        visibility = load_visibility(run_dir, cfg.relevancy.visibility_min_views)
        # One labelled view cached at a time: the single pass below asks all of a view's queries together.
        engine = QueryEngine(model, text_encoder, cfg.relevancy, cfg.trainer.eval_chunk, visibility=visibility,
                             max_cached_views=1)
        loc, seg = evaluate_localization_and_segmentation(engine, scene, cfg.scene.name, run_dir)
        log.info("localization %.3f over %d queries %s, mIoU %.3f %s", loc["overall"], loc["num_queries"],
                 loc.get("per_level"), seg["miou"], seg.get("per_level"))
        summary.update({"localization": loc["overall"], "miou": seg["miou"],
                        "localization_per_level": loc.get("per_level", {}), "miou_per_level": seg.get("per_level", {})})
    return summary
