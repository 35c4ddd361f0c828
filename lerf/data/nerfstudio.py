"""Reader for scenes in nerfstudio format: `transforms.json` + images.

Reads shared or per-frame intrinsics (fl_x, fl_y, cx, cy, w, h), camera_model PINHOLE or OPENCV
(k1, k2, p1, p2), camera-to-world poses in the OpenGL convention, and an optional downscale
(`images_{d}/` when present, else resized on load). Every problem is reported as a
`SceneFormatError` naming the file, the frame and what was expected.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import imageio.v3 as iio
import numpy as np
import torch
import torch.nn.functional as F

from lerf.data.cameras import CAMERA_MODELS, Cameras

INTRINSIC_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h")
DISTORTION_KEYS = ("k1", "k2", "p1", "p2")


class SceneFormatError(ValueError):
    """A scene on disk does not match the nerfstudio format."""


@dataclass
class RawScene:
    """A scene as read from disk, in its own world frame and units."""

    root: Path
    frame_names: list[str]
    images: torch.Tensor  # uint8 [n, h, w, 3]
    cameras: Cameras
    background_color: Optional[list[float]] = None
    extras: dict[str, Any] = field(default_factory=dict)  # per-frame extra paths (depth, ids)


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise SceneFormatError(f"{path}: file not found; expected a nerfstudio transforms.json")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise SceneFormatError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(meta, dict):
        raise SceneFormatError(f"{path}: expected a JSON object at the top level")
    return meta


def _frame_value(meta: dict, frame: dict, key: str, path: Path, name: str) -> float:
    value = frame.get(key, meta.get(key))
    if value is None:
        raise SceneFormatError(f"{path}: frame '{name}' has no '{key}' and the file has no shared '{key}'")
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise SceneFormatError(f"{path}: frame '{name}': '{key}' must be a number, got {value!r}") from None
    if not math.isfinite(value):
        raise SceneFormatError(f"{path}: frame '{name}': '{key}' must be finite, got {value}")
    return value


def _pose(frame: dict, path: Path, name: str) -> np.ndarray:
    try:
        pose = np.asarray(frame["transform_matrix"], dtype=np.float64)
    except KeyError:
        raise SceneFormatError(f"{path}: frame '{name}' has no 'transform_matrix'") from None
    except (TypeError, ValueError):
        raise SceneFormatError(f"{path}: frame '{name}': 'transform_matrix' must be a 4x4 list of numbers") from None
    if pose.shape not in ((4, 4), (3, 4)):
        raise SceneFormatError(f"{path}: frame '{name}': 'transform_matrix' has shape {pose.shape}, expected 4x4")
    if not np.isfinite(pose).all():
        raise SceneFormatError(f"{path}: frame '{name}': 'transform_matrix' has non-finite values")
    return pose[:3, :4]


def _image_path(root: Path, file_path: str, downscale: int) -> tuple[Path, bool]:
    """The file to read, and whether it still needs resizing by `downscale`."""
    original = root / file_path
    if downscale > 1:
        parts = Path(file_path).parts
        if len(parts) > 1:
            candidate = root / f"{parts[0]}_{downscale}" / Path(*parts[1:])
            if candidate.is_file():
                return candidate, False
    return original, downscale > 1


def _read_pixels(path: Path, where: str) -> np.ndarray:
    if not path.is_file():
        raise SceneFormatError(f"{where}: image {path} not found")
    try:
        return np.asarray(iio.imread(path))
    except Exception as err:  # noqa: BLE001 - each image library raises its own types
        raise SceneFormatError(f"{where}: cannot read image {path} ({type(err).__name__}: {err}); is the file "
                               "truncated or not an image?") from None


def _unit_range(img: np.ndarray, path: Path, where: str) -> np.ndarray:
    """Pixels as float32 in [0, 1]: unsigned integers by their maximum, floats only if already in [0, 1]."""
    if img.dtype.kind == "u":
        return img.astype(np.float32) / np.iinfo(img.dtype).max
    if img.dtype.kind == "f":
        lo, hi = (float(np.nanmin(img)), float(np.nanmax(img))) if img.size else (0.0, 0.0)
        if not np.isfinite(img).all() or lo < 0 or hi > 1:
            raise SceneFormatError(f"{where}: image {path} is a float image with values in [{lo:.3g}, {hi:.3g}] "
                                   "(or non-finite); expected [0, 1]. Convert HDR/linear float TIFFs to 8- or "
                                   "16-bit sRGB")
        return img.astype(np.float32)
    raise SceneFormatError(f"{where}: image {path} has pixel type {img.dtype}; expected unsigned 8/16-bit or float")


def _to_rgb(img: np.ndarray, background: Optional[list[float]], path: Path, where: str) -> np.ndarray:
    """Grey, grey+alpha, RGB or RGBA -> uint8 RGB; transparent pixels composited onto `background`."""
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[-1] not in (1, 2, 3, 4):
        raise SceneFormatError(f"{where}: image {path} has shape {img.shape}; expected grey, grey+alpha, RGB or RGBA")
    if img.dtype == np.uint8 and img.shape[-1] == 3:
        return img
    pixels = _unit_range(img, path, where)
    channels = pixels.shape[-1]
    colour = np.repeat(pixels[..., :1], 3, axis=-1) if channels <= 2 else pixels[..., :3]
    if channels in (2, 4) and (pixels[..., -1] < 1).any():
        if background is None:
            raise SceneFormatError(f"{where}: image {path} has transparent pixels (alpha) but the scene has no "
                                   "background colour to composite them onto; set background_color in "
                                   "transforms.json or scene.background_color=[r,g,b]")
        alpha = pixels[..., -1:]
        colour = colour * alpha + np.asarray(background, dtype=np.float32) * (1 - alpha)
    return (np.clip(colour, 0, 1) * 255).round().astype(np.uint8)


def _load_image(path: Path, resize_by: int, expected_hw: tuple[int, int], json_path: Path, name: str,
                background: Optional[list[float]] = None) -> torch.Tensor:
    where = f"{json_path}: frame '{name}'"
    img = _to_rgb(_read_pixels(path, where), background, path, where)
    tensor = torch.from_numpy(np.ascontiguousarray(img))
    if resize_by > 1:
        h, w = tensor.shape[:2]
        resized = F.interpolate(tensor.permute(2, 0, 1)[None].float(), size=(h // resize_by, w // resize_by),
                                mode="area")
        tensor = resized[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8)
    if tuple(tensor.shape[:2]) != expected_hw:
        raise SceneFormatError(
            f"{where}: image {path} is {tensor.shape[1]}x{tensor.shape[0]} (w x h), "
            f"expected {expected_hw[1]}x{expected_hw[0]} from 'w'/'h' (after downscale)")
    return tensor


def _check_camera(fx: float, fy: float, w: float, h: float, pose: np.ndarray, json_path: Path, name: str) -> None:
    """Intrinsics and pose a renderer can use: positive focal lengths and size, a rigid rotation."""
    where = f"{json_path}: frame '{name}'"
    if fx <= 0 or fy <= 0:
        raise SceneFormatError(f"{where}: focal length must be > 0 pixels, got fl_x={fx}, fl_y={fy}")
    if w < 1 or h < 1:
        raise SceneFormatError(f"{where}: image size must be >= 1 pixel, got w={w}, h={h}")
    rot = pose[:3, :3]
    det = float(np.linalg.det(rot))
    if abs(det) < 1e-6:
        raise SceneFormatError(f"{where}: 'transform_matrix' has a degenerate rotation (determinant {det:.3g}; "
                               "an all-zero pose?); expected a rigid camera-to-world matrix")
    error = float(np.abs(rot.T @ rot - np.eye(3)).max())
    if error > 1e-2:
        raise SceneFormatError(f"{where}: 'transform_matrix' rotation is not orthonormal (R^T R differs from I by "
                               f"{error:.3g}); expected a rigid camera-to-world matrix")


def _frame_camera(meta: dict, frame: dict, json_path: Path, name: str, downscale: int
                  ) -> tuple[np.ndarray, list[float], list[float], tuple[int, int]]:
    """One frame's pose, intrinsics [fx, fy, cx, cy] and distortion (after downscale) and (h, w)."""
    frame_model = frame.get("camera_model", meta.get("camera_model", "PINHOLE"))
    if frame_model not in CAMERA_MODELS:
        raise SceneFormatError(f"{json_path}: frame '{name}': unknown camera_model '{frame_model}'")
    pose = _pose(frame, json_path, name)
    fx, fy, cx, cy, w, h = (_frame_value(meta, frame, k, json_path, name) for k in INTRINSIC_KEYS)
    _check_camera(fx, fy, w, h, pose, json_path, name)
    dist = [float(frame.get(k, meta.get(k, 0.0))) for k in DISTORTION_KEYS] if frame_model == "OPENCV" else [0.0] * 4
    # Downscaling scales pixel units; the principal point follows the pixel grid.
    intr = [fx / downscale, fy / downscale, cx / downscale, cy / downscale]
    return pose, intr, dist, (int(h) // downscale, int(w) // downscale)


def read_nerfstudio(root: str | Path, downscale: int = 1, load_images: bool = True,
                    background: Optional[list[float]] = None) -> RawScene:
    """Read a nerfstudio scene directory. All frames must share one image size. RGBA images are
    composited onto `background` (default: the file's background_color)."""
    root = Path(root)
    if not root.is_dir():
        raise SceneFormatError(f"{root}: scene directory not found (expected a folder with transforms.json)")
    if downscale < 1:
        raise SceneFormatError(f"downscale must be >= 1, got {downscale}")
    json_path = root / "transforms.json"
    meta = _read_json(json_path)
    frames = meta.get("frames")
    if not isinstance(frames, list) or not frames:
        raise SceneFormatError(f"{json_path}: 'frames' is missing or empty; expected a list of frames")
    model = meta.get("camera_model", "PINHOLE")
    if model not in CAMERA_MODELS:
        raise SceneFormatError(f"{json_path}: unknown camera_model '{model}'; supported: {', '.join(CAMERA_MODELS)}")
    background = background if background is not None else meta.get("background_color")

    poses, intr, dist, names, images, extras = [], [], [], [], [], {"depth": [], "ids": [], "parts": []}
    size = None
    for i, frame in enumerate(frames):
        if not isinstance(frame, dict) or "file_path" not in frame:
            raise SceneFormatError(f"{json_path}: frame #{i} has no 'file_path'")
        name = str(frame["file_path"])
        pose, frame_intr, frame_dist, hw = _frame_camera(meta, frame, json_path, name, downscale)
        if size is None:
            size = hw
        elif size != hw:
            raise SceneFormatError(f"{json_path}: frame '{name}' is {hw[1]}x{hw[0]}, other frames {size[1]}x{size[0]}; "
                                   "all frames must share one image size")
        poses.append(pose), intr.append(frame_intr), dist.append(frame_dist), names.append(name)
        for key, extra in (("depth", "depth_file_path"), ("ids", "mask_id_path"), ("parts", "part_id_path")):
            extras[key].append(frame.get(extra))
        if load_images:
            path, resize_by = _image_path(root, name, downscale)
            images.append(_load_image(path, downscale if resize_by else 1, size, json_path, name, background))

    intr_t = torch.tensor(intr, dtype=torch.float32)
    cameras = Cameras(
        c2w=torch.tensor(np.stack(poses), dtype=torch.float32),
        fx_px=intr_t[:, 0], fy_px=intr_t[:, 1], cx_px=intr_t[:, 2], cy_px=intr_t[:, 3],
        width=size[1], height=size[0], distortion=torch.tensor(dist, dtype=torch.float32))
    stacked = torch.stack(images) if load_images else torch.empty(0, size[0], size[1], 3, dtype=torch.uint8)
    return RawScene(root=root, frame_names=names, images=stacked, cameras=cameras,
                    background_color=meta.get("background_color"), extras=extras)
