"""The browser's camera as a project camera, and back.

viser reports `T_world_camera` in the OpenCV convention (+x right, +y down, looking along +z) with
a vertical field of view in radians; the project's `Cameras` use nerfstudio's OpenGL convention
(+x right, +y up, looking along -z, see lerf/data/cameras.py). The two differ by flipping the
camera's y and z axes: R_opengl = R_opencv · diag(1, -1, -1); the position is shared. The viewer's
world frame is the run's normalised scene frame, so no other transform is involved.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import viser.transforms as vtf
from jaxtyping import Float

from lerf.viewer.backend import Cameras

_FLIP_YZ = np.diag([1.0, -1.0, -1.0])


def c2w_from_viser(wxyz: Float[np.ndarray, "4"], position: Float[np.ndarray, "3"]) -> Float[np.ndarray, "3 4"]:
    """OpenGL camera-to-world from viser's OpenCV pose.

    Example: the identity quaternion (1, 0, 0, 0) looks along world +z in OpenCV terms, so the
    OpenGL camera's -z axis must be world +z: the result's rotation is diag(1, -1, -1).
    """
    rot_cv = vtf.SO3(np.asarray(wxyz, dtype=np.float64)).as_matrix()
    return np.concatenate([rot_cv @ _FLIP_YZ, np.asarray(position, dtype=np.float64)[:, None]], 1)


def viser_from_c2w(c2w: Float[np.ndarray, "3 4"]) -> tuple[Float[np.ndarray, "4"], Float[np.ndarray, "3"]]:
    """(wxyz, position) for viser from an OpenGL camera-to-world; inverse of `c2w_from_viser`."""
    c2w = np.asarray(c2w, dtype=np.float64)
    return vtf.SO3.from_matrix(c2w[:, :3] @ _FLIP_YZ).wxyz, c2w[:, 3].copy()


def vertical_fov(fy_px: float, height: int) -> float:
    """Vertical field of view (radians) of a pinhole camera: 2·atan(h / 2fy)."""
    return 2.0 * math.atan(height / (2.0 * fy_px))


def pinhole(c2w: Float[np.ndarray, "3 4"], fov_y: float, width: int, height: int) -> Cameras:
    """One undistorted pinhole camera with its principal point at the image centre.

    Example: fov_y = 90° and height 64 give fy = 32 px; square pixels make fx = fy.
    """
    f_px = height / (2.0 * math.tan(fov_y / 2.0))
    one = torch.ones(1)
    return Cameras(torch.as_tensor(c2w, dtype=torch.float32)[None], one * f_px, one * f_px, one * width / 2.0,
                   one * height / 2.0, width, height, torch.zeros(1, 4))


def resize(cameras: Cameras, cam: int, height: int) -> Cameras:
    """Camera `cam` alone, re-projected to `height` rows (width keeps the aspect, intrinsics scale)."""
    s = height / cameras.height
    width = max(1, round(cameras.width * s))
    one = cameras.subset([cam])
    return Cameras(one.c2w, one.fx_px * width / cameras.width, one.fy_px * s, one.cx_px * width / cameras.width,
                   one.cy_px * s, width, height, one.distortion)


def image_size(aspect: float, height: int) -> tuple[int, int]:
    """(width, height) for a browser canvas of this aspect (width / height) at `height` rows."""
    return max(1, round(height * aspect)), height


def pose_key(c2w: Float[np.ndarray, "3 4"], fov_y: float, width: int, height: int) -> tuple:
    """A hashable name for a camera (rounded so float noise from the browser does not miss the
    query engine's cache)."""
    return (tuple(np.round(np.asarray(c2w), 5).reshape(-1).tolist()), round(fov_y, 5), width, height)
