"""Load what training wrote (checkpoint, config, scene) for query and eval — read-only."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from lerf.config import TrainConfig, to_typed

from lerf.build import build_model, resolve_device
from lerf.checkpoint import load_checkpoint
from lerf.data.scene import SceneData, load_scene
from lerf.model import LerfModel, SceneGeometry

log = logging.getLogger(__name__)


@dataclass
class LoadedRun:
    run_dir: Path
    cfg: TrainConfig
    model: LerfModel
    scene: SceneData
    step: int

    def text_encoder(self):
        """The CLIP encoder the run was supervised with (text side only is used)."""
        from lerf.encoders.factory import build_clip_encoder
        from lerf.supervision import encoder_options

        device = next(self.model.parameters()).device
        return build_clip_encoder(self.cfg.encoder.clip, device, **encoder_options(self.cfg, self.scene, "clip"))


def load_run(run_dir: str | Path, device: str = "auto") -> LoadedRun:
    """Rebuild the model from a run's checkpoint alone (its config is stored inside)."""
    run_dir = Path(run_dir)
    dev = resolve_device(device)
    state = load_checkpoint(run_dir, map_location=dev)
    cfg = to_typed(state["config"])
    # Reading a run must never write into it or regenerate data behind the user's back.
    scene = load_scene(cfg.scene, generate=False)
    geometry = SceneGeometry(**state["geometry"])
    model, _ = build_model(cfg.model, geometry, dev, state["dims"]["clip"], state["dims"]["dino"])
    model.load_state_dict(state["model"])
    model.eval()
    log.info("loaded %s (step %d)", run_dir, state["step"])
    return LoadedRun(run_dir, cfg, model, scene, state["step"])


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
