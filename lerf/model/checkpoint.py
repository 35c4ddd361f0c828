"""The one home of the checkpoint format: save, load, version, and the model it rebuilds.

Files: `checkpoints/step_<N>.pt`, the newest `trainer.keep_checkpoints` of them (each verified after
writing); loading falls back from a damaged newest file to the next one, saying which was bad.
A checkpoint alone is enough to resume or query a run: it holds the resolved config, the scene
geometry the model was built for (normalisation, bounds, background, training frames), the
feature widths, the weights, the camera poses the model was fitted to (pose-refined for the
training frames when `model.pose_refinement`), and — for resuming — optimiser, scheduler and RNG
states. Resume, query, evaluation and
the viewer all read it through `load_checkpoint`; none of them rebuilds the geometry elsewhere.
"""
from __future__ import annotations

import copy
import logging
import os
import random
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from lerf.config import TrainConfig, to_plain, to_typed
from lerf.data.atomic import replace_atomically
from lerf.data.cameras import Cameras
from lerf.data.scale_modes import ScaleRange
from lerf.model import LerfModel, SceneGeometry, build_model

CHECKPOINT_DIR = "checkpoints"
LEGACY = "latest.pt"  # the single checkpoint of runs written before K checkpoints were kept
FORMAT = "lerf-checkpoint"
# 2: format + version keys, geometry and dims stored (written since the lerf/ layout of late 2026).
# 3: appearance embedding and pose refinement (their weights, the training frames in the geometry,
#    the fitted camera poses `c2w`).
# 4: the trained scales as a record {low, high, unit} (`scale_range`, was `scale_range_m`); the
#    language field's contraction in the config (model.language.contraction); the config without the
#    switches pruned in December 2026 (docs/pruned.md, docs/pruned_scale.md) and with
#    trainer.rarity_unbiased_nerf always written.
# Older versions are migrated when read (MIGRATIONS), never by compatibility defaults in the schema.
VERSION = 4
# The last commit whose code reads every setting a migration refuses.
LAST_WITH_PRUNED_SWITCHES = "98d7f63"

log = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """A checkpoint that is missing, damaged, foreign or of an unknown version."""


class NonFiniteError(RuntimeError):
    """Training produced a non-finite loss or weights; nothing non-finite is ever checkpointed."""

    user_error = True  # lerf.apps.cli prints it as one line


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
    scale_range: Optional[ScaleRange] = None  # the scales the language field was trained at

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


def checkpoint_file(run_dir: str | Path, step: int) -> Path:
    """checkpoints/step_00001000.pt: one file per saved step, the last `keep` of them kept."""
    return Path(run_dir) / CHECKPOINT_DIR / f"step_{step:08d}.pt"


def _file_step(path: Path) -> int:
    match = re.fullmatch(r"step_(\d+)\.pt", path.name)
    return int(match.group(1)) if match else -1  # LEGACY (latest.pt of older runs) sorts last


def checkpoint_files(run_dir: str | Path) -> list[Path]:
    """The run's checkpoint files, newest first (by step)."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    files = [p for p in folder.glob("step_*.pt") if _file_step(p) >= 0] + [folder / LEGACY]
    return sorted((p for p in files if p.is_file()), key=_file_step, reverse=True)


def _tensor_bytes(obj: Any) -> int:
    """Bytes of every tensor in a nested state (what torch.save will need on disk, roughly)."""
    if torch.is_tensor(obj):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v) for v in obj)
    return 0


def _check_finite(ckpt: Checkpoint, run_dir: Path) -> None:
    bad = [k for k, v in ckpt.model.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        kept = checkpoint_files(run_dir)
        raise NonFiniteError(f"refusing to checkpoint step {ckpt.step}: non-finite weights in {', '.join(bad[:3])}"
                             f"{' ...' if len(bad) > 3 else ''}; the last good checkpoint "
                             f"{kept[0] if kept else '(none)'} is kept")


def _verify(path: Path, step: int) -> None:
    """Read the file just written back (memory-mapped: cheap) and check it is the step we saved."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
        reason = None if isinstance(state, dict) and state.get("step") == step else "wrong content"
    except Exception as err:  # noqa: BLE001 - any read failure means the write is bad
        reason = f"{type(err).__name__}: {err}"
    if reason is not None:
        path.unlink(missing_ok=True)
        raise CheckpointError(f"{path} did not read back after writing ({reason}); it was removed and the "
                              "earlier checkpoints are kept")


def save_checkpoint(run_dir: str | Path, ckpt: Checkpoint, keep: int = 2) -> Path:
    """Write, verify, then drop all but the newest `keep` checkpoints. Non-finite weights are
    never written (`NonFiniteError`); a full disk is a `DiskFullError` and leaves no temporary."""
    run_dir = Path(run_dir)
    _check_finite(ckpt, run_dir)
    state = {"format": FORMAT, "version": VERSION, "step": ckpt.step, "config": to_plain(ckpt.config),
             "geometry": asdict(ckpt.geometry), "dims": dict(ckpt.dims), "model": ckpt.model, "c2w": ckpt.c2w,
             "optimizer": ckpt.optimizer, "scheduler": ckpt.scheduler, "rng": ckpt.rng,
             "train_time_s": ckpt.train_time_s,
             "scale_range": asdict(ckpt.scale_range) if ckpt.scale_range is not None else None}
    path = checkpoint_file(run_dir, ckpt.step)
    replace_atomically(path, lambda tmp: torch.save(state, tmp), _tensor_bytes(state) + (1 << 20))
    _verify(path, ckpt.step)
    for old in checkpoint_files(run_dir)[max(keep, 1):]:
        old.unlink(missing_ok=True)
    return path


def _prune_v3_switches(config: dict, path: Path) -> None:
    """Drops the switches that were tried and not kept (docs/pruned.md) where a run used the value
    that remains, and refuses a run that used a removed value: its pyramid or scale search no
    longer exists here. Example: {"encoder": {"pyramid_spacing": "linear", ...}} -> {"encoder": {...}}."""
    removed = {("encoder", "pyramid_spacing"): "linear", ("relevancy", "scale_spacing"): "linear"}
    for (group, key), kept in removed.items():
        value = config.get(group, {}).pop(key, kept)
        if value != kept:
            raise CheckpointError(f"{path} was trained with {group}.{key}={value}, which this lerf no longer has "
                                  f"(only {kept}; docs/pruned.md): read it with lerf at commit "
                                  f"{LAST_WITH_PRUNED_SWITCHES}")
    # A run trained before `trainer.rarity_unbiased_nerf` existed counted every ray once.
    config.setdefault("trainer", {}).setdefault("rarity_unbiased_nerf", False)


def _migrate_v3(state: dict, path: Path) -> dict:
    """Version 3 -> 4. Runs before version 4 contracted the language grid with L-inf (what they were
    trained with); a pruned scale switch's value is replaced by the kept one, with a warning: querying
    is unaffected (crop sampling only acts in training, and every query sample takes the searched
    scale whatever the training scale mode), resuming would train on with the kept one."""
    state = {**state, "config": copy.deepcopy(state["config"])}
    _prune_v3_switches(state["config"], path)
    lang = state["config"]["model"]["language"]
    lang.setdefault("contraction", "linf")
    pruned = {"crop_sampling": (lang.pop("crop_sampling", "uniform"), "uniform"),
              "scale_mode": (lang.get("scale_mode"), "depth")}
    if pruned["scale_mode"][0] == "ray_depth":
        lang["scale_mode"] = "depth"
    for key, (value, kept) in pruned.items():
        if value in ("log_uniform", "ray_depth"):
            log.warning("%s: model.language.%s=%s was pruned (docs/pruned_scale.md); read as %s", path, key, value,
                        kept)
    old = state.pop("scale_range_m", None)
    state["scale_range"] = {"low": old[0], "high": old[1], "unit": "m"} if old else None
    state["version"] = 4
    return state


MIGRATIONS = {3: _migrate_v3}  # version -> function returning the state in version + 1


def _parse(state: Any, path: Path) -> Checkpoint:
    """Check the format, migrate an older version, then type every field."""
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a lerf checkpoint (or was written by a lerf older than format "
                              f"version 3); retrain the run with this version")
    while state.get("version") in MIGRATIONS:
        state = MIGRATIONS[state["version"]](state, path)
    if state.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint format version {state.get('version')}; this lerf reads "
                              f"versions {min(MIGRATIONS)}-{VERSION}")
    return Checkpoint(step=int(state["step"]), config=to_typed(state["config"]),
                      geometry=SceneGeometry(**state["geometry"]), dims=dict(state["dims"]), model=state["model"],
                      c2w=state.get("c2w"),
                      optimizer=state["optimizer"], scheduler=state["scheduler"], rng=state["rng"],
                      train_time_s=float(state.get("train_time_s", 0.0)),
                      scale_range=ScaleRange(**state["scale_range"]) if state.get("scale_range") else None)


def read_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """One checkpoint file; a damaged or foreign file is a `CheckpointError` naming it."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # noqa: BLE001 - zip errors, EOFError, unpickling errors: all "damaged"
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path} is damaged ({type(err).__name__}: {reason})") from None
    return _parse(state, path)


def load_checkpoint(run_dir: str | Path, map_location: str | torch.device = "cpu",
                    set_aside_bad: bool = False) -> Checkpoint:
    """The run's newest good checkpoint. A damaged newer file is logged by name and skipped
    (renamed to <file>.bad when `set_aside_bad`, i.e. by the run's own trainer); when none is
    good the error names every file and why."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir} not found")
    files = checkpoint_files(run_dir)
    if not files:
        raise FileNotFoundError(f"{run_dir / CHECKPOINT_DIR} has no checkpoint: {run_dir} holds no run "
                                "(did training start there?)")
    errors = []
    for path in files:
        try:
            ckpt = read_checkpoint(path, map_location)
        except CheckpointError as err:
            errors.append(str(err))
            continue
        for bad, why in zip(files, errors):
            log.warning("%s; falling back to %s (step %d)", why, path, ckpt.step)
            if set_aside_bad:
                os.replace(bad, bad.with_name(bad.name + ".bad"))
        return ckpt
    raise CheckpointError(f"no usable checkpoint in {run_dir}: " + "; ".join(errors))


def remove_stale_temporaries(run_dir: str | Path) -> list[Path]:
    """Temporaries left by a writer that died mid-write (kill -9, power loss); call with the run lock held."""
    stale = list((Path(run_dir) / CHECKPOINT_DIR).glob(".*.tmp-*"))
    for path in stale:
        log.info("removing %s, left by an interrupted checkpoint write", path)
        path.unlink(missing_ok=True)
    return stale


def has_checkpoint(run_dir: str | Path) -> bool:
    return bool(checkpoint_files(run_dir))


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
