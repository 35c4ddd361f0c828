"""Open what training wrote (checkpoint, config, scene) for query, eval and the viewer — read-only."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from lerf.checkpoint import load_checkpoint
from lerf.config import TrainConfig
from lerf.data.scene import SceneData, load_scene
from lerf.device import resolve_device
from lerf.encoders.factory import clip_encoder_for
from lerf.model import LerfModel

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
        return clip_encoder_for(self.cfg.encoder, self.scene, next(self.model.parameters()).device)

    def engine(self, chunk: int = 4096):
        """The cached query engine over this run's model and text encoder."""
        from lerf.query.engine import QueryEngine

        return QueryEngine(self.model, self.text_encoder(), self.cfg.relevancy, chunk)


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
    return LoadedRun(run_dir, ckpt.config, model, scene, ckpt.step)
