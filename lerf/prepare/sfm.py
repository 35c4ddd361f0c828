"""Structure from motion with COLMAP through pycolmap's wheel (CPU): SIFT features, matching,
incremental mapping (the largest model is kept) and undistortion to PINHOLE.

Matching: "sequential" pairs each frame with its next ones in capture order (COLMAP's
sequential matcher, for video: O(n) pairs); "exhaustive" pairs every two frames (O(n^2): best
for a few hundred photos taken in any order). "auto" picks sequential for video and exhaustive
for photos.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import pycolmap
from tqdm import tqdm

from lerf.prepare.frames import InputError

log = logging.getLogger(__name__)

MATCHERS = ("auto", "exhaustive", "sequential")
CAMERA_MODELS = ("SIMPLE_RADIAL", "OPENCV", "RADIAL", "SIMPLE_PINHOLE", "PINHOLE")
MIN_REGISTERED = 3  # fewer registered frames than this is no scene (two views fix no third)
FEATURE_CHUNK = 8  # frames per feature-extraction call: the progress bar's step
SEQUENTIAL_OVERLAP = 10  # COLMAP's default: each frame is matched with its next 10 (and 2^k-th) frames

# Rough CPU cost model, from benchmarks/bench_prepare.py on this project's shared 2-core machine
# (load average 12-15, docs/prepare.md): SIFT 3.5-4.2 s per megapixel (512 and 1600 px frames),
# matching 0.09-0.15 s per pair of frames (1,800 and ~6,000 features per frame), mapping plus
# undistortion plus writing about 1.5 s per frame. An idle machine is faster; frames with more
# features than the demo renders match more slowly. A planning figure, not a promise.
SECONDS_PER_MEGAPIXEL = 4.0
SECONDS_PER_PAIR = 0.1
SECONDS_PER_FRAME_MAPPED = 1.5


@dataclass
class SfmOptions:
    matcher: str = "auto"
    camera_model: str = "SIMPLE_RADIAL"
    threads: int = -1  # -1: all cores
    seed: int = 0  # COLMAP's RANSAC and mapper seed, so that a rerun gives the same cameras


@dataclass
class SfmResult:
    model_dir: Path  # the undistorted PINHOLE model (sparse/0 layout: cameras, images, points3D)
    image_dir: Path  # the undistorted frames
    registered: list[str]  # frame names in the kept model
    num_frames: int
    num_models: int
    num_points: int
    reprojection_error_px: float
    track_length: float
    seconds: dict[str, float]


def pick_matcher(matcher: str, kind: str) -> str:
    if matcher not in MATCHERS:
        raise ValueError(f"matcher={matcher}: expected one of {', '.join(MATCHERS)}")
    return ("sequential" if kind == "video" else "exhaustive") if matcher == "auto" else matcher


def pair_count(n: int, matcher: str) -> int:
    """Frame pairs the matcher compares. Example: 10 frames -> exhaustive 45, sequential 45 (the
    overlap of 10 covers every pair); 100 frames sequential -> about 10 + log2 pairs per frame."""
    if matcher == "exhaustive":
        return n * (n - 1) // 2
    per_frame = SEQUENTIAL_OVERLAP + max(0, (SEQUENTIAL_OVERLAP - 1).bit_length())  # quadratic overlap
    return sum(min(per_frame, n - 1 - i) for i in range(n))


def estimate_seconds(n: int, width: int, height: int, matcher: str) -> float:
    return (n * width * height / 1e6 * SECONDS_PER_MEGAPIXEL + pair_count(n, matcher) * SECONDS_PER_PAIR
            + n * SECONDS_PER_FRAME_MAPPED)


def extract(database: Path, image_dir: Path, names: list[str], opts: SfmOptions) -> None:
    """SIFT features of every frame into the database, one shared camera (one device, one zoom)."""
    if opts.camera_model not in CAMERA_MODELS:
        raise ValueError(f"camera_model={opts.camera_model}: expected one of {', '.join(CAMERA_MODELS)}")
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = opts.camera_model
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.num_threads = opts.threads
    for start in tqdm(range(0, len(names), FEATURE_CHUNK), desc="SfM features", unit="chunk"):
        pycolmap.extract_features(database, image_dir, image_names=names[start:start + FEATURE_CHUNK],
                                  camera_mode=pycolmap.CameraMode.SINGLE, reader_options=reader,
                                  extraction_options=extraction, device=pycolmap.Device.cpu)
        reader.existing_camera_id = 1  # later chunks join the first chunk's camera


def match(database: Path, matcher: str, opts: SfmOptions) -> None:
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = opts.threads
    with tqdm(total=1, desc=f"SfM matching ({matcher})") as bar:
        if matcher == "sequential":
            pairing = pycolmap.SequentialPairingOptions()
            pairing.overlap = SEQUENTIAL_OVERLAP
            pycolmap.match_sequential(database, matching_options=matching, pairing_options=pairing,
                                      device=pycolmap.Device.cpu)
        else:
            pycolmap.match_exhaustive(database, matching_options=matching, device=pycolmap.Device.cpu)
        bar.update()


def map_frames(database: Path, image_dir: Path, out_dir: Path, n: int, opts: SfmOptions) -> dict:
    """Incremental mapping; returns COLMAP's models by index (several when the frames split)."""
    options = pycolmap.IncrementalPipelineOptions()
    options.num_threads = opts.threads
    options.random_seed = opts.seed
    with tqdm(total=n, desc="SfM mapping", unit="frame") as bar:
        # COLMAP calls this once per frame it registers after the initial pair.
        models = pycolmap.incremental_mapping(database, image_dir, out_dir, options=options,
                                              initial_image_pair_callback=lambda: bar.update(2),
                                              next_image_callback=lambda: bar.update(1))
    return models


def no_model_error(n: int, best: int) -> InputError:
    return InputError(f"SfM registered {best} of {n} frames, too few for a scene (need >= {MIN_REGISTERED}): the "
                      "frames do not overlap enough or lack texture. Try: more frames (frames=), slower camera motion "
                      "with more overlap, matcher=exhaustive, a larger max_side=, or a scene with more texture")


def undistort(model_dir: Path, image_dir: Path, out_dir: Path, opts: SfmOptions) -> None:
    with tqdm(total=1, desc="SfM undistortion") as bar:
        pycolmap.undistort_images(out_dir, model_dir, image_dir, output_type="COLMAP", num_threads=opts.threads)
        bar.update()


def run_sfm(image_dir: Path, names: list[str], kind: str, work_dir: Path, opts: SfmOptions) -> SfmResult:
    """The whole SfM chain on the frames `names` in `image_dir`; work files go to `work_dir`."""
    matcher = pick_matcher(opts.matcher, kind)
    database, sparse = work_dir / "database.db", work_dir / "sparse"
    sparse.mkdir(parents=True, exist_ok=True)
    seconds, t0 = {}, time.perf_counter()
    extract(database, image_dir, names, opts)
    seconds["features"], t0 = time.perf_counter() - t0, time.perf_counter()
    match(database, matcher, opts)
    seconds["matching"], t0 = time.perf_counter() - t0, time.perf_counter()
    models = map_frames(database, image_dir, sparse, len(names), opts)
    seconds["mapping"], t0 = time.perf_counter() - t0, time.perf_counter()
    sizes = {i: m.num_reg_images() for i, m in models.items()}
    best = max(sizes, key=sizes.get) if sizes else None
    if best is None or sizes[best] < MIN_REGISTERED:
        raise no_model_error(len(names), sizes[best] if best is not None else 0)
    if len(sizes) > 1:
        log.warning("SfM split the frames into %d models of %s frames; keeping the largest", len(sizes),
                    sorted(sizes.values(), reverse=True))
    model = models[best]
    undistorted = work_dir / "undistorted"
    undistort(sparse / str(best), image_dir, undistorted, opts)
    seconds["undistortion"] = time.perf_counter() - t0
    registered = sorted(model.images[i].name for i in model.reg_image_ids())
    return SfmResult(model_dir=undistorted / "sparse", image_dir=undistorted / "images", registered=registered,
                     num_frames=len(names), num_models=len(sizes), num_points=model.num_points3D(),
                     reprojection_error_px=float(model.compute_mean_reprojection_error()),
                     track_length=float(model.compute_mean_track_length()), seconds=seconds)
