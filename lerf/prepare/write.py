"""Write a prepared scene: nerfstudio transforms.json (what lerf.data.nerfstudio reads), images/,
images_2/ (half size, for scene.downscale=2), sparse/0 (the same cameras as a COLMAP model) and
prepare.json (how well SfM did, the scale and where it came from).

Poses: COLMAP stores world-to-camera (R, t) with camera axes x right, y down, z forward
(OpenCV). transforms.json wants camera-to-world with x right, y up, z backward (OpenGL, as
nerfstudio and lerf.data.nerfstudio read it): invert, then negate the camera's y and z axes.
The world is turned so that the cameras' mean up direction is +z (as the demo scene's) and
scaled to metres (lerf.prepare.scale).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pycolmap
from jaxtyping import Float
from PIL import Image
from tqdm import tqdm

from lerf.prepare.scale import ScaleChoice

log = logging.getLogger(__name__)

WARN_REGISTERED = 0.8  # below this fraction of frames registered, prepare.json carries a warning
OPENCV_TO_OPENGL = np.diag([1.0, -1.0, -1.0])


def c2w_opengl(cam_from_world: Float[np.ndarray, "3 4"]) -> Float[np.ndarray, "4 4"]:
    """OpenGL camera-to-world from COLMAP's OpenCV world-to-camera [R | t].

    Example: R = I, t = (0, 0, 2) (the world origin 2 m in front of the camera) -> camera at
    (0, 0, -2), looking down +z of the world, so its OpenGL z axis (backward) is (0, 0, -1).
    """
    rot, t = cam_from_world[:, :3], cam_from_world[:, 3]
    c2w = np.eye(4)
    c2w[:3, :3] = rot.T @ OPENCV_TO_OPENGL
    c2w[:3, 3] = -rot.T @ t
    return c2w


def rotation_between(a: Float[np.ndarray, "3"], b: Float[np.ndarray, "3"]) -> Float[np.ndarray, "3 3"]:
    """The smallest rotation taking direction `a` to direction `b` (Rodrigues).

    Example: a = x, b = y -> a 90 degree turn about z.
    """
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    v, c = np.cross(a, b), float(a @ b)
    if c < -1 + 1e-9:  # opposite: half a turn about any axis normal to a
        axis = np.cross(a, [1.0, 0.0, 0.0] if abs(a[0]) < 0.9 else [0.0, 1.0, 0.0])
        axis /= np.linalg.norm(axis)
        return 2 * np.outer(axis, axis) - np.eye(3)
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx / (1 + c)


def camera_poses(model: pycolmap.Reconstruction, names: list[str]) -> Float[np.ndarray, "n 4 4"]:
    """OpenGL c2w of the frames `names` (all registered in `model`), in that order."""
    by_name = {model.images[i].name: model.images[i] for i in model.reg_image_ids()}
    return np.stack([c2w_opengl(by_name[n].cam_from_world().matrix()) for n in names])


def to_metric_up(model: pycolmap.Reconstruction, names: list[str], scale: ScaleChoice) -> None:
    """Turn `model`'s world so that the mean camera up is +z, and scale it to metres (in place)."""
    up = camera_poses(model, names)[:, :3, 1].mean(0)
    rotation = rotation_between(up, np.array([0.0, 0.0, 1.0])) if np.linalg.norm(up) > 1e-6 else np.eye(3)
    model.transform(pycolmap.Sim3d(scale.metres_per_unit, pycolmap.Rotation3d(rotation), np.zeros(3)))


def write_images(src_dir: Path, names: list[str], out_dir: Path) -> tuple[int, int]:
    """images/ (the undistorted frames) and images_2/ (half size, area-averaged); returns (w, h)."""
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "images_2").mkdir(parents=True, exist_ok=True)
    size = None
    for name in tqdm(names, desc="write images"):
        with Image.open(src_dir / name) as img:
            img = img.convert("RGB")
            size = size or img.size
            save_kwargs = {"quality": 95} if name.endswith(".jpg") else {}
            img.save(out_dir / "images" / name, **save_kwargs)
            # lerf.data.nerfstudio expects images_2/ to be (w // 2, h // 2)
            img.resize((img.size[0] // 2, img.size[1] // 2), Image.BOX).save(out_dir / "images_2" / name, **save_kwargs)
    return size


def transforms_json(model: pycolmap.Reconstruction, names: list[str], scale: ScaleChoice) -> dict[str, Any]:
    cameras = list(model.cameras.values())
    if len(cameras) != 1 or cameras[0].model_name != "PINHOLE":
        raise RuntimeError(f"expected one undistorted PINHOLE camera, got {[c.model_name for c in cameras]}")
    cam = cameras[0]
    fx, fy, cx, cy = (float(v) for v in cam.params)
    poses = camera_poses(model, names)
    units = "metres" if scale.source == "given" else "metres (estimated, see prepare.json)"
    return {"camera_model": "PINHOLE", "fl_x": fx, "fl_y": fy, "cx": cx, "cy": cy, "w": cam.width, "h": cam.height,
            "scene_units": units,
            "frames": [{"file_path": f"images/{n}", "transform_matrix": p.tolist()} for n, p in zip(names, poses)]}


def registration_warning(registered: int, total: int, kind: str) -> str | None:
    if registered >= WARN_REGISTERED * total:
        return None
    tips = ("more frames (frames=), a slower pass with more overlap" if kind == "video"
            else "more photos with more overlap (about 2/3 shared between neighbours)")
    return (f"only {registered} of {total} frames ({100 * registered / total:.0f} %) registered, below "
            f"{100 * WARN_REGISTERED:.0f} %: parts of the scene may be missing. Try {tips}, matcher=exhaustive, a "
            "larger max_side=, and avoid blur, plain walls and moving objects")
