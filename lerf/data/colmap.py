"""Reader for COLMAP scenes: `images/` plus a sparse model `sparse/0/` (binary or text), read
with pycolmap (COLMAP's own reader; no hand-written parser here).

Conventions converted (COLMAP docs, "Output format" and "Camera models"):
  - a COLMAP image stores `cam_from_world` (R, t): x_cam = R x_world + t, in the OpenCV camera
    frame (+x right, +y down, looking along +z). The project's `c2w` is OpenGL (+y up, looking
    along -z, lerf/data/cameras.py), so c2w = [R^T | -R^T t] with its y and z axes negated;
  - pixel coordinates have the image's top-left corner at (0, 0) and the first pixel's centre at
    (0.5, 0.5) (COLMAP's feature coordinates; nerfstudio assumes the same, gsplat PR #151), the
    project's own convention, so cx, cy are used as they are;
  - camera models map onto the project's (fx, fy, cx, cy) + OpenCV (k1, k2, p1, p2): a radial
    model's `k` is k1, and the coefficients a model lacks are 0.

The world frame and units are COLMAP's (arbitrary scale: set scene.metres_per_unit when a length
is known). Frames are ordered by image name, as nerfstudio's COLMAP converter does, so the
eval_every split does not depend on COLMAP's image ids.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from lerf.data.cameras import Cameras
from lerf.data.nerfstudio import RawScene, SceneFormatError, _check_camera, _image_path, _load_image

log = logging.getLogger(__name__)

# COLMAP camera models read (their parameter names as pycolmap's `params_info` lists them); the
# fisheye and thin-prism models would need another distortion model in lerf/data/cameras.py.
SUPPORTED_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV")
IMAGES_DIR = "images"


def sparse_dir(root: Path) -> Path:
    """The sparse model's folder: `sparse/0` (COLMAP's mapper output), else `sparse/` itself when it
    holds the model files directly."""
    for candidate in (root / "sparse" / "0", root / "sparse"):
        if any((candidate / f"cameras.{ext}").is_file() for ext in ("bin", "txt")):
            return candidate
    raise SceneFormatError(f"{root}: no COLMAP model found; expected {root / 'sparse' / '0'}/cameras.bin (or .txt) "
                           "with images and points3D beside it")


def read_model(path: Path):
    """The pycolmap Reconstruction in `path` (binary or text); a clear error when unreadable."""
    import pycolmap  # imported here: only COLMAP scenes need it

    try:
        return pycolmap.Reconstruction(str(path))
    except Exception as err:  # noqa: BLE001 - pycolmap raises ValueError, RuntimeError, IndexError (a short file)
        raise SceneFormatError(f"{path}: cannot read the COLMAP model ({' '.join(str(err).split())}); expected "
                               "cameras, images and points3D as .bin or .txt") from None


def camera_intrinsics(camera, where: str) -> tuple[list[float], list[float]]:
    """[fx, fy, cx, cy] and OpenCV [k1, k2, p1, p2] of a pycolmap camera of a supported model.

    Example: SIMPLE_RADIAL params (f, cx, cy, k) = (500, 320, 240, 0.1) ->
    ([500, 500, 320, 240], [0.1, 0, 0, 0]).
    """
    model = camera.model_name
    if model not in SUPPORTED_MODELS:
        raise SceneFormatError(f"{where}: camera {camera.camera_id} has model {model}; supported: "
                               f"{', '.join(SUPPORTED_MODELS)} (undistort the images with COLMAP's image_undistorter "
                               "to get PINHOLE cameras)")
    names = [n.strip() for n in camera.params_info.split(",")]
    p = dict(zip(names, (float(v) for v in camera.params)))
    fx, fy = p.get("fx", p.get("f")), p.get("fy", p.get("f"))
    dist = [p.get("k1", p.get("k", 0.0)), p.get("k2", 0.0), p.get("p1", 0.0), p.get("p2", 0.0)]
    return [fx, fy, p["cx"], p["cy"]], dist


def opengl_c2w(cam_from_world: np.ndarray) -> np.ndarray:
    """COLMAP's world-to-camera [R | t] (OpenCV camera) -> the project's camera-to-world (OpenGL).

    Example: R = I, t = (0, 0, 2) (the camera at world (0, 0, -2), looking along world +z) ->
    c2w = [[1, 0, 0, 0], [0, -1, 0, 0], [0, 0, -1, -2]]: its -z axis (the view direction) is world +z.
    """
    rot, t = cam_from_world[:3, :3], cam_from_world[:3, 3]
    c2w = np.concatenate([rot.T, (-rot.T @ t)[:, None]], axis=1)
    c2w[:, 1:3] *= -1  # OpenCV (y down, z forward) -> OpenGL (y up, z backward)
    return c2w


def _posed_images(model, where: str) -> list:
    images = sorted((im for im in model.images.values() if im.has_pose), key=lambda im: im.name)
    unposed = len(model.images) - len(images)
    if unposed:
        log.warning("%s: %d of %d images have no pose (not registered) and are left out", where, unposed,
                    len(model.images))
    if not images:
        raise SceneFormatError(f"{where}: the COLMAP model has no registered image")
    return images


def read_colmap(root: str | Path, downscale: int = 1, load_images: bool = True,
                background: Optional[list[float]] = None) -> RawScene:
    """Read a COLMAP scene folder (`images/` + `sparse/0`). All frames must share one image size;
    `downscale` reads `images_{d}/` when present (else resizes) and divides the intrinsics by d."""
    root = Path(root)
    if not root.is_dir():
        raise SceneFormatError(f"{root}: scene directory not found (expected a folder with images/ and sparse/0/)")
    if downscale < 1:
        raise SceneFormatError(f"downscale must be >= 1, got {downscale}")
    if not (root / IMAGES_DIR).is_dir():
        raise SceneFormatError(f"{root}: no {IMAGES_DIR}/ folder; a COLMAP scene has its images in {root / IMAGES_DIR}")
    where = sparse_dir(root)
    model = read_model(where)
    poses, intr, dist, names, images, size = [], [], [], [], [], None
    for image in _posed_images(model, str(where)):
        name = f"{IMAGES_DIR}/{image.name}"
        camera = model.cameras[image.camera_id]
        k, d = camera_intrinsics(camera, str(where))
        c2w = opengl_c2w(np.asarray(image.cam_from_world().matrix(), dtype=np.float64))
        _check_camera(k[0], k[1], float(camera.width), float(camera.height), c2w, where, name)
        hw = (camera.height // downscale, camera.width // downscale)
        if size is not None and hw != size:
            raise SceneFormatError(f"{where}: image '{image.name}' is {camera.width}x{camera.height}, others "
                                   f"{size[1] * downscale}x{size[0] * downscale}; all frames must share one size")
        size = hw
        # Downscaling scales pixel units; the principal point follows the pixel grid.
        poses.append(c2w), intr.append([v / downscale for v in k]), dist.append(d), names.append(name)
        if load_images:
            path, resize = _image_path(root, name, downscale)
            images.append(_load_image(path, downscale if resize else 1, size, where, name, background))
    intr_t = torch.tensor(intr, dtype=torch.float32)
    cameras = Cameras(c2w=torch.tensor(np.stack(poses), dtype=torch.float32), fx_px=intr_t[:, 0], fy_px=intr_t[:, 1],
                      cx_px=intr_t[:, 2], cy_px=intr_t[:, 3], width=size[1], height=size[0],
                      distortion=torch.tensor(dist, dtype=torch.float32))
    stacked = torch.stack(images) if load_images else torch.empty(0, size[0], size[1], 3, dtype=torch.uint8)
    log.info("COLMAP model %s: %d posed images, %d camera(s)", where, len(names), len(model.cameras))
    return RawScene(root=root, frame_names=names, images=stacked, cameras=cameras)
