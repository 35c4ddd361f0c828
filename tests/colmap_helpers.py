"""COLMAP folders for tests, written by pycolmap itself from known cameras (never by the reader
under test), and the known cameras' rays computed here with plain NumPy pinhole math. Also the
real path's generated capture (tests/real_capture.py) as a COLMAP folder."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import imageio.v3 as iio
import numpy as np
import pycolmap

from tests.real_capture import TARGET, capture_frames
from tests.real_capture import write_images as write_capture_images


@dataclass
class KnownFrame:
    name: str  # file name under images/
    rot: np.ndarray  # COLMAP cam_from_world rotation (x_cam = rot @ x_world + t), OpenCV camera
    t: np.ndarray
    camera_id: int = 1


def look_at(centre, target, world_up=(0.0, 0.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    """COLMAP (OpenCV) cam_from_world of a camera at `centre` looking at `target`: rows of the
    rotation are the camera's x (right), y (down), z (forward) axes in world coordinates."""
    centre, target = np.asarray(centre, float), np.asarray(target, float)
    z = target - centre
    z /= np.linalg.norm(z)
    x = np.cross(z, np.asarray(world_up, float))
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    rot = np.stack([x, y, z])
    return rot, -rot @ centre


def ring_frames(n: int, radius: float = 3.0, height: float = 1.0, camera_ids=None, prefix="frame_") -> list[KnownFrame]:
    """n cameras on a circle around the origin, looking at it; names frame_00001.png, ..."""
    frames = []
    for k in range(n):
        angle = 2 * np.pi * k / n
        rot, t = look_at([radius * np.cos(angle), radius * np.sin(angle), height], [0, 0, 0])
        frames.append(KnownFrame(f"{prefix}{k + 1:05d}.png", rot, t, 1 if camera_ids is None else camera_ids[k]))
    return frames


def write_model(folder: Path, cameras: dict[int, tuple[str, list[float], int, int]], frames: list[KnownFrame],
                fmt: str = "bin", reverse_ids: bool = False) -> None:
    """A sparse model in `folder` (cameras {id: (model name, params, width, height)}), written by
    pycolmap's own writer, binary or text. reverse_ids: image ids in reverse name order."""
    rec = pycolmap.Reconstruction()
    for cam_id, (model, params, width, height) in cameras.items():
        cam = pycolmap.Camera.create_from_model_name(cam_id, model, 1.0, width, height)
        cam.params = params
        rec.add_camera_with_trivial_rig(cam)
    for k, f in enumerate(frames):
        image_id = len(frames) - k if reverse_ids else k + 1
        image = pycolmap.Image(name=f.name, camera_id=f.camera_id, image_id=image_id)
        rec.add_image_with_trivial_frame(image, pycolmap.Rigid3d(pycolmap.Rotation3d(f.rot), f.t))
    folder.mkdir(parents=True, exist_ok=True)
    (rec.write_binary if fmt == "bin" else rec.write_text)(str(folder))


def write_images(folder: Path, frames: list[KnownFrame], width: int, height: int, seed: int = 0,
                 pixels: Optional[list[np.ndarray]] = None) -> list[np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = []
    for k, f in enumerate(frames):
        img = pixels[k] if pixels is not None else rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        iio.imwrite(folder / f.name, img)
        out.append(img)
    return out


def pinhole_rays(frame: KnownFrame, fx, fy, cx, cy, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World origin and unit directions through pixel coordinates (u, v) of an undistorted
    camera: COLMAP's camera looks along +z with y down, so the camera-frame direction is
    ((u - cx) / fx, (v - cy) / fy, 1), and world = rot^T (cam - t)."""
    d_cam = np.stack([(u - cx) / fx, (v - cy) / fy, np.ones_like(u)], axis=-1)
    d_world = d_cam @ frame.rot  # rows: rot^T @ d
    d_world /= np.linalg.norm(d_world, axis=-1, keepdims=True)
    return -frame.rot.T @ frame.t, d_world


def project(frame: KnownFrame, model: str, params: list[float], dirs_world: np.ndarray) -> np.ndarray:
    """Pixel coordinates of world directions from the camera centre, by each COLMAP model's
    forward formula (COLMAP src/colmap/sensor/models.h), written out here."""
    d = dirs_world @ frame.rot.T  # camera frame
    x, y = d[:, 0] / d[:, 2], d[:, 1] / d[:, 2]
    if model in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL"):
        f, cx, cy, *k = params
        fx = fy = f
        k1, k2, p1, p2 = (k + [0.0, 0.0])[:2] + [0.0, 0.0]
    else:
        fx, fy, cx, cy, *k = params
        k1, k2, p1, p2 = (k + [0.0] * 4)[:4]
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 * r2
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + 2 * p2 * x * y + p1 * (r2 + 2 * y * y)
    return np.stack([fx * xd + cx, fy * yd + cy], axis=-1)


def write_colmap_capture(root: str | Path, num_frames: int = 6, height: int = 48, width: int = 64, seed: int = 0,
                         image_ext: str = "png") -> Path:
    """tests/real_capture.py's capture (the same images, poses in centimetres, per-frame
    intrinsics and distortion) as a COLMAP folder: `root`/images/ plus `root`/sparse/0/ written
    by pycolmap, binary, one OPENCV camera per image. Returns `root`."""
    root = Path(root)
    frames = capture_frames(num_frames, height, width, seed, image_ext)
    write_capture_images(root, frames)
    cameras, known = {}, []
    for k, f in enumerate(frames):
        # COLMAP params of OPENCV: fx, fy, cx, cy, k1, k2, p1, p2
        cameras[k + 1] = ("OPENCV", [*f.intrinsics, *f.distortion], width, height)
        known.append(KnownFrame(f.name, *look_at(f.position, TARGET), camera_id=k + 1))
    write_model(root / "sparse" / "0", cameras, known)
    return root
