"""From a folder of photos or a phone video to a scene that train.py reads, with pycolmap (CPU).

    python prepare.py input=photos/ out=scenes/desk
    python prepare.py input=walkaround.mp4 out=scenes/desk frames=150 step_cm=5
    python train.py scene=custom scene.path=scenes/desk

Writes <out>/transforms.json (nerfstudio format, poses in metres), images/, images_2/,
sparse/0/ and prepare.json (frames registered, reprojection error, track length, the scale and
where it came from). SfM has no metric scale: give metres_per_unit= (metres per SfM unit) when
known, else the scale is ESTIMATED from an assumed camera step of step_cm between frames.
Never writes into a non-empty folder unless it is an earlier prepare output and overwrite=true.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from omegaconf import MISSING

from lerf.apps.cli import parse_args, run

log = logging.getLogger("prepare")


@dataclass
class PrepareArgs:
    input: str = MISSING  # a folder of photos or a video file
    out: str = MISSING  # the scene folder to write (new or empty)
    frames: int = 150  # video frames kept: evenly spaced, the sharpest of near neighbours
    max_side: int = 1600  # frames are downscaled to at most this many pixels on their longer side
    frame_format: str = "jpg"  # jpg | png
    matcher: str = "auto"  # auto (sequential for video, exhaustive for photos) | exhaustive | sequential
    camera_model: str = "SIMPLE_RADIAL"  # COLMAP's model to fit: SIMPLE_RADIAL | OPENCV | RADIAL | PINHOLE ...
    threads: int = -1  # -1: every core
    seed: int = 0
    metres_per_unit: Optional[float] = None  # metres per SfM unit, when known
    step_cm: float = 5.0  # otherwise: the assumed camera step between consecutive frames (an estimate)
    overwrite: bool = False
    verbose: bool = False  # COLMAP's own log lines


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s")
    args = parse_args(PrepareArgs, argv, usage=__doc__)
    import pycolmap

    from lerf.prepare.pipeline import PrepareOptions, prepare_scene
    from lerf.prepare.sfm import SfmOptions

    pycolmap.logging.minloglevel = 0 if args.verbose else 2  # glog: 0 info, 1 warning, 2 error
    opts = PrepareOptions(frames=args.frames, max_side=args.max_side, frame_format=args.frame_format,
                          metres_per_unit=args.metres_per_unit, step_cm=args.step_cm, overwrite=args.overwrite)
    sfm = SfmOptions(matcher=args.matcher, camera_model=args.camera_model, threads=args.threads, seed=args.seed)
    report = prepare_scene(Path(args.input), Path(args.out), opts, sfm)
    log.info("registered %d of %d frames; reprojection error %.2f px, mean track length %.1f; %d points",
             report["registered"], report["frames"], report["mean_reprojection_error_px"],
             report["mean_track_length"], report["points3d"])
    log.info("scale: %.4g metres per SfM unit (%s)", report["scale"]["metres_per_unit"], report["scale"]["note"])
    for warning in report["warnings"]:
        log.warning("%s", warning)
    log.info("took %.0f s (%s); next: python train.py scene=custom scene.path=%s",
             sum(report["seconds"].values()), ", ".join(f"{k} {v:.0f} s" for k, v in report["seconds"].items()),
             args.out)


if __name__ == "__main__":
    run(main)
