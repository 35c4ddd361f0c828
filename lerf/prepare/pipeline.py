"""prepare.py's recipe: frames -> SfM -> metric, upright poses -> the scene folder.

Output folder:
  transforms.json  nerfstudio scene (PINHOLE, OpenGL c2w in metres), written last: its presence
                   means the scene is complete
  images/ images_2/  undistorted frames, full and half size
  sparse/0/        the same cameras and points as a COLMAP model (binary)
  prepare.json     frames registered of total, reprojection error, track length, scale, timings,
                   warnings
  colmap/          SfM's own files: frames/ (what SfM saw), database.db, sparse/<i> (raw models)
"""
from __future__ import annotations

import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import pycolmap
from PIL import Image

from lerf.data.atomic import write_json
from lerf.prepare.frames import InputError, extract_frames
from lerf.prepare.scale import choose_scale
from lerf.prepare.sfm import SfmOptions, estimate_seconds, pick_matcher, run_sfm
from lerf.prepare.write import camera_poses, registration_warning, to_metric_up, transforms_json, write_images

log = logging.getLogger("prepare")


@dataclass
class PrepareOptions:
    frames: int = 150  # video frames kept (photos: all are used)
    max_side: int = 1600  # pixels; frames are downscaled to it
    frame_format: str = "jpg"  # jpg | png: the format of the written frames
    metres_per_unit: Optional[float] = None  # metres per SfM unit, when known
    step_cm: float = 5.0  # else: the assumed camera step between consecutive frames
    overwrite: bool = False  # replace an earlier prepare output in `out`


def claim_out_dir(out: Path, overwrite: bool) -> None:
    """An empty `out` to write into; an earlier prepare output only with overwrite=true, and
    never a folder that prepare did not make."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"out={out} is a file; expected a folder for the scene")
    if out.is_dir() and any(out.iterdir()):
        made_by_prepare = (out / "prepare.json").is_file() or (out / "colmap").is_dir()
        if not overwrite:
            raise FileExistsError(f"out={out} is not empty; choose a new folder"
                                  + (" or add overwrite=true to replace this earlier prepare output"
                                     if made_by_prepare else ""))
        if not made_by_prepare:
            raise FileExistsError(f"out={out} holds files that prepare did not write; overwrite=true only replaces "
                                  "an earlier prepare output. Choose a new folder")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def check_options(opts: PrepareOptions, sfm: SfmOptions) -> None:
    """Bad values fail before any frame is read."""
    if opts.frames < 3:
        raise ValueError(f"frames={opts.frames}: expected at least 3 frames")
    if opts.max_side < 64:
        raise ValueError(f"max_side={opts.max_side}: expected at least 64 pixels")
    if opts.frame_format not in ("jpg", "png"):
        raise ValueError(f"frame_format={opts.frame_format}: expected jpg or png")
    pick_matcher(sfm.matcher, "photos")


def _report(source: Path, frames, sfm_result, scale, names: list[str], size, seconds: dict) -> dict[str, Any]:
    registered = len(names)
    warning = registration_warning(registered, len(frames.names), frames.kind)
    unregistered = [n for n in frames.names if n not in set(names)]
    return {
        "input": str(source), "kind": frames.kind, "input_total": frames.total,
        "frames": len(frames.names), "registered": registered,
        "registered_fraction": round(registered / len(frames.names), 4), "unregistered": unregistered,
        "sfm_models": sfm_result.num_models, "points3d": sfm_result.num_points,
        "mean_reprojection_error_px": round(sfm_result.reprojection_error_px, 4),
        "mean_track_length": round(sfm_result.track_length, 3),
        "image_size": list(size), "scale": asdict(scale), "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "warnings": [warning] if warning else [], "pycolmap": pycolmap.__version__,
        "frame_sources": dict(zip(frames.names, frames.source)),
    }


def prepare_scene(source: Path, out: Path, opts: PrepareOptions, sfm: SfmOptions) -> dict[str, Any]:
    """Photos or a video at `source` -> a scene at `out` that `train.py scene=custom` reads."""
    check_options(opts, sfm)
    if not source.exists():
        raise InputError(f"input={source}: no such file or folder")
    claim_out_dir(out, opts.overwrite)
    work = out / "colmap"
    (work / "frames").mkdir(parents=True)
    t0 = time.perf_counter()
    frames = extract_frames(source, work / "frames", opts.frames, opts.max_side, opts.frame_format)
    seconds = {"frames": time.perf_counter() - t0}
    if len(frames.names) < 3:
        raise InputError(f"input={source}: {len(frames.names)} frame(s); SfM needs at least 3 overlapping views")
    with Image.open(work / "frames" / frames.names[0]) as first:
        w, h = first.size
    matcher = pick_matcher(sfm.matcher, frames.kind)
    log.info("%d frames of %dx%d, %s matching: SfM should take about %.0f s on a shared 2-core CPU (rough: "
             "docs/prepare.md)", len(frames.names), w, h, matcher,
             estimate_seconds(len(frames.names), w, h, matcher))
    result = run_sfm(work / "frames", frames.names, frames.kind, work, sfm)
    seconds.update(result.seconds)
    t0 = time.perf_counter()
    model = pycolmap.Reconstruction(result.model_dir)
    names = [n for n in frames.names if n in set(result.registered)]  # capture order
    scale = choose_scale(camera_poses(model, names)[:, :3, 3], opts.metres_per_unit, opts.step_cm)
    to_metric_up(model, names, scale)
    size = write_images(result.image_dir, names, out)
    (out / "sparse" / "0").mkdir(parents=True)
    model.write(out / "sparse" / "0")
    shutil.rmtree(work / "undistorted")  # its images are now images/, its model sparse/0
    seconds["write"] = time.perf_counter() - t0
    report = _report(source, frames, result, scale, names, size, seconds)
    write_json(out / "prepare.json", report)
    write_json(out / "transforms.json", transforms_json(model, names, scale))
    return report
