"""The frames SfM sees: every photo of a folder, or evenly spaced and sharp frames of a video.

Frames are downscaled so that their longer side is at most `max_side` pixels and written as
frame_00001.<ext>, ... in capture order (photos: file-name order, which is shooting order on
phones and cameras; video: time). Video frames are read with the ffmpeg binary that the
imageio-ffmpeg wheel ships, so nothing needs installing on the system.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import imageio
import numpy as np
from jaxtyping import Float, UInt8
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm import tqdm

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm", ".mts")
SHARPNESS_SIDE = 480  # sharpness is compared on frames shrunk to about this side: cheap, and blur still shows


class InputError(ValueError):
    """The input folder or video cannot give frames (a user error: printed as one line)."""


@dataclass
class Frames:
    names: list[str]  # written into the frames folder, in capture order
    source: list[str]  # the photo file or "video frame <index>" each one came from
    kind: str  # "photos" | "video"
    total: int  # photos found, or frames in the video


def frame_name(k: int, ext: str) -> str:
    return f"frame_{k + 1:05d}.{ext}"


def sharpness(grey: Float[np.ndarray, "h w"]) -> float:
    """Variance of the 4-neighbour Laplacian over the interior: low for blurred frames.

    Example: a 4x4 checkerboard of 0 and 1 -> interior Laplacians -4, 4, 4, -4 -> variance 16;
    a constant image -> 0.
    """
    lap = (grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:]) - 4 * grey[1:-1, 1:-1]
    return float(lap.var()) if lap.size else 0.0


def _grey_small(rgb: UInt8[np.ndarray, "h w 3"]) -> Float[np.ndarray, "a b"]:
    stride = max(1, max(rgb.shape[:2]) // SHARPNESS_SIDE)
    return rgb[::stride, ::stride].astype(np.float32).mean(axis=-1)


def downscale(image: Image.Image, max_side: int) -> Image.Image:
    """`image` shrunk (never enlarged) so that its longer side is at most `max_side`."""
    w, h = image.size
    factor = max_side / max(w, h)
    if factor >= 1:
        return image
    return image.resize((max(1, round(w * factor)), max(1, round(h * factor))), Image.LANCZOS)


def _save(image: Image.Image, path: Path) -> None:
    if path.suffix == ".jpg":
        image.save(path, quality=95)  # near-lossless; PNG frames of a 150-frame capture take ~1 GB
    else:
        image.save(path)


def list_photos(folder: Path) -> list[Path]:
    photos = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not photos:
        raise InputError(f"input={folder}: no images found (expected files ending in {', '.join(IMAGE_SUFFIXES)}), "
                         "or give a video file")
    return photos


def read_photo(path: Path) -> Image.Image:
    """An RGB photo, turned upright by its EXIF orientation; unreadable files are one clear error."""
    try:
        with Image.open(path) as img:
            return ImageOps.exif_transpose(img).convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise InputError(f"{path}: cannot be read as an image ({type(err).__name__}: {err}); remove it from the "
                         "folder or convert it to JPEG or PNG") from None


def extract_photos(folder: Path, out_dir: Path, max_side: int, ext: str) -> Frames:
    """Every photo of `folder`, downscaled, into `out_dir`; all must share one size (one camera)."""
    photos = list_photos(folder)
    names, sizes = [], {}
    for k, path in enumerate(tqdm(photos, desc="frames (photos)")):
        image = downscale(read_photo(path), max_side)
        sizes.setdefault(image.size, []).append(path.name)
        names.append(frame_name(k, ext))
        _save(image, out_dir / names[-1])
    if len(sizes) > 1:
        listed = "; ".join(f"{w}x{h}: {len(v)} (e.g. {v[0]})" for (w, h), v in sizes.items())
        raise InputError(f"input={folder}: the photos have different sizes after downscaling ({listed}); prepare "
                         "expects one camera at one orientation: remove or rotate the odd ones")
    return Frames(names, [str(p) for p in photos], "photos", len(photos))


def open_video(path: Path):
    """An imageio ffmpeg reader and its frame count; a file without frames is one clear error."""
    try:
        reader = imageio.get_reader(path, "ffmpeg")
        count = reader.count_frames()
    except Exception as err:  # noqa: BLE001 - ffmpeg failures arrive as OSError, RuntimeError, IndexError...
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"{path}: no video frames could be read (ffmpeg: {first}); is it a complete video file?"
                         ) from None
    if count < 1:
        reader.close()
        raise InputError(f"{path}: the video has no frames")
    return reader, count


def segments(count: int, budget: int) -> list[tuple[int, int]]:
    """Candidate windows, one per kept frame: the middle half of `budget` equal segments, so that
    kept frames stay nearly evenly spaced whichever candidate wins.

    Example: count 16, budget 2 -> segments [0, 8) and [8, 16) -> candidates [2, 6) and [10, 14).
    """
    if count <= budget:
        return [(i, i + 1) for i in range(count)]
    edges = np.linspace(0, count, budget + 1)
    out = []
    for a, b in zip(edges[:-1], edges[1:]):
        quarter = (b - a) / 4
        lo, hi = int(np.floor(a + quarter)), int(np.ceil(b - quarter))
        out.append((lo, max(hi, lo + 1)))
    return out


def extract_video(path: Path, out_dir: Path, budget: int, max_side: int, ext: str) -> Frames:
    """Up to `budget` frames of the video: in each window the sharpest one (blurred frames from
    fast motion or focus hunting lose to their neighbours), downscaled, into `out_dir`."""
    reader, count = open_video(path)
    windows = segments(count, budget)
    names, source = [], []
    best: Optional[tuple[float, int, np.ndarray]] = None
    w = 0
    try:
        for i, frame in enumerate(tqdm(reader, total=count, desc="frames (video)")):
            if w >= len(windows):
                break
            lo, hi = windows[w]
            if lo <= i < hi:
                score = sharpness(_grey_small(frame))
                if best is None or score > best[0]:
                    best = (score, i, np.asarray(frame))
            if i == hi - 1 and best is not None:
                names.append(frame_name(len(names), ext))
                source.append(f"video frame {best[1]}")
                _save(downscale(Image.fromarray(best[2]).convert("RGB"), max_side), out_dir / names[-1])
                best, w = None, w + 1
    except Exception as err:  # noqa: BLE001 - a truncated file fails mid-stream
        log.warning("%s: reading stopped at a broken frame (%s); kept the %d frames read before it", path, err,
                    len(names))
    finally:
        reader.close()
    if not names:
        raise InputError(f"{path}: no video frames could be decoded; is the file complete?")
    return Frames(names, source, "video", count)


def extract_frames(source: Path, out_dir: Path, budget: int, max_side: int, ext: str = "jpg") -> Frames:
    """Frames of a folder of photos or of a video file, into `out_dir` (which must exist)."""
    if source.is_dir():
        frames = extract_photos(source, out_dir, max_side, ext)
        if len(frames.names) > budget:
            log.info("%d photos: all are used (frames=%d limits video frames only)", len(frames.names), budget)
        return frames
    if not source.exists():
        raise InputError(f"input={source}: no such file or folder")
    if source.suffix.lower() in VIDEO_SUFFIXES:
        return extract_video(source, out_dir, budget, max_side, ext)
    raise InputError(f"input={source}: expected a folder of photos or a video file ({', '.join(VIDEO_SUFFIXES)})")
