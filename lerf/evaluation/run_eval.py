"""Shared plumbing of the eval scripts: match label files to a run's cameras, render maps."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import torch.nn.functional as F
from jaxtyping import Float
from omegaconf import MISSING
from torch import Tensor

from lerf.evaluation.labels import FrameLabels, LabelFormatError, load_label_dir
from lerf.evaluation.localization import LERF_OVS_SMOOTH_K
from lerf.query.run import load_run


def labels_dir_for(scene, labels: Optional[str]) -> Path:
    if labels:
        path = Path(labels)
    elif scene.labels_dir is not None:
        path = scene.labels_dir
    else:
        raise LabelFormatError(f"scene {scene.root} has no labels/ folder; pass labels=<dir of frame_XXXXX.json> "
                               "(e.g. the lerf_ovs labels released with LangSplat)")
    if not path.is_dir():
        raise LabelFormatError(f"{path}: labels directory not found")
    return path


def match_frames(scene, frames: list[FrameLabels], labels_dir: Path) -> list[tuple[FrameLabels, int]]:
    """Pair each label file with the scene camera of the same image (train or eval split)."""
    by_stem = {Path(name).stem: i for i, name in enumerate(scene.frame_names)}
    pairs = []
    for frame in frames:
        stem = Path(frame.frame_name).stem
        if stem not in by_stem:
            raise LabelFormatError(f"{labels_dir}: label for '{frame.frame_name}' matches no frame of {scene.root} "
                                   f"(known e.g. {list(by_stem)[:3]})")
        pairs.append((frame, by_stem[stem]))
    return pairs


def labelled_views(scene, labels: Optional[str]) -> list[tuple[FrameLabels, int]]:
    path = labels_dir_for(scene, labels)
    return match_frames(scene, load_label_dir(path), path)


def maps_at_label_size(maps: Float[Tensor, "s h w"], height: int, width: int) -> Float[Tensor, "s H W"]:
    """Relevancy maps resized (bilinear) to the labels' image size when the render differs."""
    if maps.shape[-2:] == (height, width):
        return maps
    return F.interpolate(maps[None], size=(height, width), mode="bilinear", align_corners=False)[0]


def scale_boxes(boxes, sx: float, sy: float):
    return [(x1 * sx, y1 * sy, x2 * sx, y2 * sy) for x1, y1, x2, y2 in boxes]


@dataclass
class LabelledEvalArgs:
    """Arguments shared by eval/localization.py and eval/segmentation.py."""

    run: str = MISSING
    labels: Optional[str] = None  # default: the scene's labels/ folder
    out: Optional[str] = None  # default: the run dir
    # LangSplat's 30x30 mean filter was set for ~1000-px renders; scale it for other sizes.
    smooth_k: int = LERF_OVS_SMOOTH_K
    # The protocol's input: the map at LERF's chosen scale, or every searched scale as a level.
    levels: str = "chosen_scale"  # chosen_scale | all_scales
    device: str = "auto"
    chunk: int = 4096
    # Query-time ablations on a trained model (None: the run's own relevancy settings).
    visibility_filter: Optional[bool] = None
    visible_share: Optional[bool] = None
    canonical_phrases: Optional[List[str]] = None  # the one_canonical row: [object]
    canonical_reduce: Optional[str] = None  # min | max (the max_canonical row)


def open_run(args: LabelledEvalArgs):
    """The run's query engine, scene, name and output folder (read-only access to the run)."""
    loaded = load_run(args.run, args.device, args.chunk)
    for key in ("visibility_filter", "visible_share", "canonical_phrases", "canonical_reduce"):
        if getattr(args, key) is not None:
            setattr(loaded.cfg.relevancy, key, getattr(args, key))
    out = Path(args.out) if args.out else loaded.run_dir
    return loaded.engine(), loaded.scene, loaded.cfg.scene.name, out
