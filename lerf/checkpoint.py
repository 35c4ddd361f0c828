"""The one home of the checkpoint format: save, load, version, and the model it rebuilds.

A checkpoint alone is enough to resume or query a run: it holds the resolved config, the scene
geometry the model was built for (normalisation, bounds, background, training frames), the
feature widths, the weights, the camera poses the model was fitted to (pose-refined for the
training frames when `model.pose_refinement`), and — for resuming — optimiser, scheduler and RNG
states. Resume, query, evaluation and
the viewer all read it through `load_checkpoint`; none of them rebuilds the geometry elsewhere.
"""
from __future__ import annotations

import os
import random
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from lerf.config import TrainConfig, to_plain, to_typed
from lerf.data.cameras import Cameras
from lerf.model import LerfModel, SceneGeometry, build_model

CHECKPOINT_DIR = "checkpoints"
LATEST = "latest.pt"
FORMAT = "lerf-checkpoint"
# 2: format + version keys, geometry and dims stored (written since the lerf/ layout of late 2026).
# 3: appearance embedding and pose refinement (their weights, the training frames in the geometry,
#    the fitted camera poses `c2w`).
VERSION = 3


class CheckpointError(ValueError):
    """A checkpoint that is missing, damaged, foreign or of an unknown version."""


@dataclass
class Checkpoint:
    step: int
    config: TrainConfig
    geometry: SceneGeometry
    dims: dict[str, int]  # {"clip": width of the CLIP target, "dino": width of the DINO target}
    model: dict[str, torch.Tensor]
    # Camera-to-world of every scene frame in the normalised frame, as the model was fitted to
    # them: pose-refined for training frames (model.pose_refinement), as loaded otherwise.
    c2w: Optional[torch.Tensor] = None
    optimizer: Optional[dict] = None
    scheduler: Optional[dict] = None
    rng: Optional[dict] = None
    train_time_s: float = 0.0

    def build_model(self, device: torch.device) -> LerfModel:
        """The trained model on `device`, in eval mode (backend resolved against `device`)."""
        model, _ = build_model(self.config.model, self.geometry, device, self.dims["clip"], self.dims["dino"])
        model.load_state_dict(self.model)
        return model.eval()

    def fitted_cameras(self, cameras: Cameras) -> Cameras:
        """The scene's cameras with the poses the model was fitted to (query, eval and the viewer
        use these, so a pose-refined training view lines up with the field)."""
        if self.c2w is None:
            return cameras
        if self.c2w.shape != cameras.c2w.shape:
            raise CheckpointError(f"the checkpoint holds poses of {self.c2w.shape[0]} frames but the scene now has "
                                  f"{cameras.c2w.shape[0]}: the scene on disk changed since training")
        return replace(cameras, c2w=self.c2w.to(cameras.c2w))


def checkpoint_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / LATEST


def save_atomic(obj: Any, path: Path) -> None:
    """torch.save to a temporary file, then rename: a crash never leaves a truncated checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_checkpoint(run_dir: str | Path, ckpt: Checkpoint) -> Path:
    state = {"format": FORMAT, "version": VERSION, "step": ckpt.step, "config": to_plain(ckpt.config),
             "geometry": asdict(ckpt.geometry), "dims": dict(ckpt.dims), "model": ckpt.model, "c2w": ckpt.c2w,
             "optimizer": ckpt.optimizer, "scheduler": ckpt.scheduler, "rng": ckpt.rng,
             "train_time_s": ckpt.train_time_s}
    path = checkpoint_path(run_dir)
    save_atomic(state, path)
    return path


def _parse(state: Any, path: Path) -> Checkpoint:
    """Check the format and version, then type every field."""
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a lerf checkpoint (or was written by a lerf older than format "
                              f"version {VERSION}); retrain the run with this version")
    if state.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint format version {state.get('version')}; this lerf reads "
                              f"version {VERSION}")
    return Checkpoint(step=int(state["step"]), config=to_typed(state["config"]),
                      geometry=SceneGeometry(**state["geometry"]), dims=dict(state["dims"]), model=state["model"],
                      c2w=state.get("c2w"),
                      optimizer=state["optimizer"], scheduler=state["scheduler"], rng=state["rng"],
                      train_time_s=float(state.get("train_time_s", 0.0)))


def load_checkpoint(run_dir: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Load a run's latest checkpoint, with a clear error when the run or file is missing."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir} not found")
    path = checkpoint_path(run_dir)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {run_dir} has no checkpoint (did training start there?)")
    return _parse(torch.load(path, map_location=map_location, weights_only=False), path)


def rng_state(generator: torch.Generator) -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
             "rays": generator.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict, generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    generator.set_state(state["rays"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
