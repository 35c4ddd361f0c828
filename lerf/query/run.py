"""Open what training wrote (checkpoint, config, scene) for query, eval and the viewer — read-only."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from lerf.checkpoint import load_checkpoint
from lerf.config import RelevancyConfig, TrainConfig
from lerf.data.scene import SceneData, load_scene
from lerf.device import resolve_device
from lerf.encoders.factory import clip_encoder_for
from lerf.fields.scale_modes import ScaleRange
from lerf.model import LerfModel
from lerf.query.visibility import VISIBILITY_FILE, VisibilityGrid, build_visibility, load_visibility

log = logging.getLogger(__name__)


@dataclass
class LoadedRun:
    run_dir: Path
    cfg: TrainConfig
    model: LerfModel
    scene: SceneData
    step: int
    scale_range: Optional[ScaleRange] = None  # the scales training supervised
    _visibility: Optional[VisibilityGrid] = field(default=None, repr=False)

    def text_encoder(self):
        """The CLIP encoder the run was supervised with (text side only is used)."""
        return clip_encoder_for(self.cfg, self.scene, next(self.model.parameters()).device)

    def visibility(self, chunk: int = 4096) -> VisibilityGrid:
        """The grid training stored; built in memory (never written into the run) when missing."""
        if self._visibility is not None:
            return self._visibility
        grid = load_visibility(self.run_dir, self.cfg.relevancy.visibility_min_views)
        if grid is None:
            log.info("%s has no %s (training did not finish?): building the visibility grid in memory",
                     self.run_dir, VISIBILITY_FILE)
            grid = build_visibility(self.model, self.scene.cameras, list(self.scene.train_idx), self.cfg.relevancy,
                                    chunk)
        self._visibility = grid
        return grid

    def engine(self, chunk: int = 4096):
        """The cached query engine over this run's model, text encoder and visibility grid."""
        from lerf.query.engine import QueryEngine

        warn_scale_range(self.cfg.relevancy, self.scale_range)
        visibility = self.visibility(chunk) if self.cfg.relevancy.visibility_filter else None
        return QueryEngine(self.model, self.text_encoder(), self.cfg.relevancy, chunk, visibility=visibility)


def load_run(run_dir: str | Path, device: str = "auto") -> LoadedRun:
    """Rebuild the model from a run's checkpoint alone (its config and geometry are stored inside)."""
    run_dir = Path(run_dir)
    dev = resolve_device(device)
    ckpt = load_checkpoint(run_dir, map_location=dev)
    # Reading a run must never write into it or regenerate data behind the user's back.
    scene = load_scene(ckpt.config.scene, generate=False)
    scene.cameras = ckpt.fitted_cameras(scene.cameras)  # pose-refined training views, when refined
    model = ckpt.build_model(dev)
    log.info("loaded %s (step %d)", run_dir, ckpt.step)
    return LoadedRun(run_dir, ckpt.config, model, scene, ckpt.step, ckpt.scale_range)


def warn_scale_range(cfg: RelevancyConfig, trained: Optional[ScaleRange]) -> bool:
    """Warn (and return True) when the searched scales miss every scale training saw — e.g.
    poses in non-metric units without scene.metres_per_unit. Both are in the run's scale unit."""
    if trained is None or (cfg.scale_min_m <= trained.high and trained.low <= cfg.scale_max_m):
        return False
    log.warning("the query searches scales %.3g-%.3g but training supervised %.3g-%.3g (%s): relevancy will be "
                "meaningless; are the poses metric? (set scene.metres_per_unit)", cfg.scale_min_m,
                cfg.scale_max_m, trained.low, trained.high, trained.unit)
    return True


def select_views(spec: str, scene: SceneData) -> list[int]:
    """Frame indices named by a `views=` argument: eval (held-out; the first training view when
    there are none), train, all, or comma-separated indices."""
    if spec == "eval":
        return list(scene.eval_idx) or list(scene.train_idx[:1])
    if spec == "train":
        return list(scene.train_idx)
    if spec == "all":
        return list(range(len(scene.frame_names)))
    try:
        views = [int(v) for v in str(spec).split(",") if v.strip()]
    except ValueError:
        raise SystemExit(f"views must be eval|train|all or comma-separated indices, got '{spec}'") from None
    bad = [v for v in views if not 0 <= v < len(scene.frame_names)]
    if bad or not views:
        raise SystemExit(f"views {bad or spec} out of range: the scene has frames 0..{len(scene.frame_names) - 1}")
    return views
