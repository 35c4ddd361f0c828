"""A generated nerfstudio capture with nothing of the demo scene in it: what a phone app writes.

No depth, id masks or labels; every frame has its own intrinsics and OPENCV distortion (k1, k2,
p1, p2 all non-zero); poses are in centimetres (non-metric for the reader: scene.metres_per_unit
= 0.01 turns them into metres). The images are procedural textures (smooth colour gradients,
stripes and a few discs that move from frame to frame), enough for the encoders to see structure;
they are not a consistent 3D scene, which none of the real-path tests needs.

Used by tests/test_real_path.py (tiny) and benchmarks/bench_run_cost.py (LERF-sized).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import imageio.v3 as iio
import numpy as np

# The capture's poses are in centimetres: scene.metres_per_unit for it.
METRES_PER_UNIT = 0.01
DISTORTION = {"k1": -0.04, "k2": 0.008, "p1": 0.0006, "p2": -0.0004}
TARGET = np.zeros(3)  # every camera looks at the origin


def look_at_c2w(position: np.ndarray, target: np.ndarray) -> np.ndarray:
    """OpenGL camera-to-world (camera looks down -z, +y up) at `position` looking at `target`."""
    back = position - target
    back /= np.linalg.norm(back)
    right = np.cross([0.0, 0.0, 1.0], back)
    right /= np.linalg.norm(right)
    up = np.cross(back, right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, up, back, position
    return c2w


def texture(height: int, width: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Frame k's picture: gradient + stripes + discs, uint8 (h, w, 3)."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    u, v = u / width, v / height
    shift = 0.07 * k
    img = np.stack([0.5 + 0.4 * np.sin(6.0 * (u + shift)), 0.5 + 0.4 * np.cos(5.0 * v + shift),
                    0.5 + 0.3 * np.sin(9.0 * (u + v) + 3 * shift)], axis=-1)
    for _ in range(4):
        cu, cv, r = rng.uniform(0.15, 0.85), rng.uniform(0.15, 0.85), rng.uniform(0.05, 0.15)
        inside = (u - cu) ** 2 + ((v - cv) * height / width) ** 2 < r ** 2
        img[inside] = rng.uniform(0.0, 1.0, size=3)
    return (np.clip(img, 0.0, 1.0) * 255).round().astype(np.uint8)


@dataclass
class CaptureFrame:
    """One frame of the generated capture, in no file format yet: what every writer puts on disk."""
    name: str  # file name under images/
    pixels: np.ndarray  # uint8 (h, w, 3)
    position: np.ndarray  # camera centre, centimetres; the camera looks at TARGET with +z up
    intrinsics: list[float]  # fx, fy, cx, cy in pixels
    distortion: list[float]  # OpenCV k1, k2, p1, p2

    @property
    def c2w(self) -> np.ndarray:
        """OpenGL camera-to-world (4, 4), as transforms.json stores it."""
        return look_at_c2w(self.position, TARGET)


def capture_frames(num_frames: int = 6, height: int = 48, width: int = 64, seed: int = 0,
                   image_ext: str = "png") -> list[CaptureFrame]:
    """The capture's frames. Cameras circle a point 60 cm away (so 60 units: centimetres) at a
    few heights, each with its own focal length and principal point, all with OPENCV distortion."""
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(num_frames):
        angle = 2 * np.pi * k / num_frames
        position = np.array([60.0 * np.cos(angle), 60.0 * np.sin(angle), 20.0 + 5.0 * np.sin(3 * angle)])
        intrinsics = [0.9 * width * (1 + 0.01 * k), 0.9 * width * (1 + 0.012 * k), width / 2 + 0.3 * k,
                      height / 2 - 0.2 * k]
        distortion = [DISTORTION[key] * (1 + 0.05 * k) for key in ("k1", "k2", "p1", "p2")]
        frames.append(CaptureFrame(f"frame_{k:05d}.{image_ext}", texture(height, width, k, rng), position,
                                   intrinsics, distortion))
    return frames


def write_images(root: Path, frames: list[CaptureFrame]) -> None:
    (root / "images").mkdir(parents=True, exist_ok=True)
    for frame in frames:
        iio.imwrite(root / "images" / frame.name, frame.pixels)


def write_capture(root: str | Path, num_frames: int = 6, height: int = 48, width: int = 64, seed: int = 0,
                  image_ext: str = "png") -> Path:
    """Write `root`/transforms.json and `root`/images/frame_XXXXX.<ext> (capture_frames); returns `root`.
    tests/colmap_helpers.py's write_colmap_capture writes the same frames as a COLMAP folder."""
    root = Path(root)
    frames = capture_frames(num_frames, height, width, seed, image_ext)
    write_images(root, frames)
    records = []
    for f in frames:
        fx, fy, cx, cy = f.intrinsics
        records.append({
            "file_path": f"images/{f.name}", "transform_matrix": f.c2w.tolist(),
            # per-frame intrinsics, as nerfstudio's process_data writes for multi-camera captures
            "fl_x": fx, "fl_y": fy, "cx": cx, "cy": cy, "w": width, "h": height,
            **dict(zip(("k1", "k2", "p1", "p2"), f.distortion)),
        })
    (root / "transforms.json").write_text(json.dumps({"camera_model": "OPENCV", "frames": records}, indent=1))
    return root
