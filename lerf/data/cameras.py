"""Pinhole / OpenCV cameras and ray generation (nerfstudio's OpenGL convention).

Frames: `c2w` maps camera to world; the camera looks down its -z axis with +y up and +x right
(OpenGL, as in nerfstudio's transforms.json). Pixel (row i, col j) has its centre at continuous
image coordinates (u = j + 0.5, v = i + 0.5), u to the right and v down.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from lerf.data.units import depth_m_to_ray_t

CAMERA_MODELS = ("PINHOLE", "OPENCV")


@dataclass
class Cameras:
    """A batch of cameras; every tensor has the camera index as its first dimension."""

    c2w: Float[Tensor, "n 3 4"]
    fx_px: Float[Tensor, " n"]
    fy_px: Float[Tensor, " n"]
    cx_px: Float[Tensor, " n"]
    cy_px: Float[Tensor, " n"]
    width: int
    height: int
    # OpenCV radial/tangential coefficients (k1, k2, p1, p2); zeros for PINHOLE.
    distortion: Float[Tensor, "n 4"]

    def __len__(self) -> int:
        return self.c2w.shape[0]

    def to(self, device: torch.device | str) -> "Cameras":
        return Cameras(self.c2w.to(device), self.fx_px.to(device), self.fy_px.to(device),
                       self.cx_px.to(device), self.cy_px.to(device), self.width, self.height,
                       self.distortion.to(device))

    def resized(self, width: int, height: int) -> "Cameras":
        """The same cameras rendering `width` x `height` images (intrinsics scaled)."""
        sx, sy = width / self.width, height / self.height
        return Cameras(self.c2w, self.fx_px * sx, self.fy_px * sy, self.cx_px * sx, self.cy_px * sy, width, height,
                       self.distortion)

    def within(self, max_px: int) -> "Cameras":
        """The same cameras shrunk (never enlarged) to at most `max_px` on the long side.
        Example: 256x192 within 128 -> 128x96; 64x48 within 128 -> unchanged."""
        factor = min(1.0, max_px / max(self.width, self.height))
        return self.resized(max(1, round(self.width * factor)), max(1, round(self.height * factor)))

    def subset(self, index: list[int]) -> "Cameras":
        idx = torch.as_tensor(index, dtype=torch.long)
        return Cameras(self.c2w[idx], self.fx_px[idx], self.fy_px[idx], self.cx_px[idx], self.cy_px[idx],
                       self.width, self.height, self.distortion[idx])


def distort(x: Tensor, y: Tensor, k: Float[Tensor, "... 4"]) -> tuple[Tensor, Tensor]:
    """OpenCV distortion of normalised image coordinates (k1, k2, p1, p2).

    Example: k = (0.1, 0, 0, 0), (x, y) = (1, 0) -> r^2 = 1, radial = 1.1 -> (1.1, 0).
    """
    k1, k2, p1, p2 = k.unbind(-1)
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 * r2
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return xd, yd


def undistort(xd: Tensor, yd: Tensor, k: Float[Tensor, "... 4"], iters: int = 20) -> tuple[Tensor, Tensor]:
    """Invert `distort` by fixed-point iteration (the scheme of OpenCV's undistortPoints)."""
    k1, k2, p1, p2 = k.unbind(-1)
    x, y = xd.clone(), yd.clone()
    for _ in range(iters):
        r2 = x * x + y * y
        radial = 1 + k1 * r2 + k2 * r2 * r2
        dx = 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
        dy = p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
        x = (xd - dx) / radial
        y = (yd - dy) / radial
    return x, y


def camera_rays(
    cameras: Cameras, cam_idx: Tensor, u: Float[Tensor, " r"], v: Float[Tensor, " r"]
) -> tuple[Float[Tensor, "r 3"], Float[Tensor, "r 3"], Float[Tensor, " r"]]:
    """World-space rays through continuous pixel coordinates (u, v) of cameras `cam_idx`.

    Returns origins, unit directions, and `z_per_t`: camera-z depth per unit distance along the
    ray (1 on the optical axis), so z_depth = t * z_per_t.

    Example: a camera at the origin with identity rotation, fx = fy = 100, cx = cy = 50: the
    pixel centre (u, v) = (50, 50) gives direction (0, 0, -1) and z_per_t = 1; (150, 50) gives
    (1, 0, -1)/sqrt(2) and z_per_t = 1/sqrt(2).
    """
    x = (u - cameras.cx_px[cam_idx]) / cameras.fx_px[cam_idx]
    y = (v - cameras.cy_px[cam_idx]) / cameras.fy_px[cam_idx]
    k = cameras.distortion[cam_idx]
    if bool((k != 0).any()):
        x, y = undistort(x, y, k)
    # OpenGL camera: +x right, +y up (image v grows down), looking along -z.
    d_cam = torch.stack([x, -y, -torch.ones_like(x)], dim=-1)
    norm = d_cam.norm(dim=-1)
    c2w = cameras.c2w[cam_idx]
    dirs = torch.einsum("rij,rj->ri", c2w[:, :, :3], d_cam) / norm[:, None]
    origins = c2w[:, :, 3]
    return origins, dirs, 1.0 / norm


def image_pixels(width: int, height: int, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """Continuous (u, v) of every pixel centre of an image, row-major, shape [h*w] each."""
    v, u = torch.meshgrid(torch.arange(height, device=device, dtype=torch.float32) + 0.5,
                          torch.arange(width, device=device, dtype=torch.float32) + 0.5, indexing="ij")
    return u.reshape(-1), v.reshape(-1)


def project(cameras: Cameras, cam: int, points: Float[Tensor, "n 3"]
            ) -> tuple[Float[Tensor, " n"], Float[Tensor, " n"], Float[Tensor, " n"]]:
    """Pixel coordinates (u, v) and camera-z depth of points in camera `cam` (pinhole; lens
    distortion ignored, which is fine for a visibility test with a tolerance)."""
    c2w = cameras.c2w[cam]
    p_cam = (points - c2w[:, 3]) @ c2w[:, :3]  # R^T (p - t)
    z = -p_cam[:, 2]
    safe = z.clamp_min(1e-6)
    u = cameras.fx_px[cam] * p_cam[:, 0] / safe + cameras.cx_px[cam]
    v = -cameras.fy_px[cam] * p_cam[:, 1] / safe + cameras.cy_px[cam]
    return u, v, z


def backproject(cameras: Cameras, cam: int, depth_m: Float[Tensor, "h w"], scale_factor: float
                ) -> Float[Tensor, "n 3"]:
    """Surface points of every pixel in normalised scene coordinates, from camera-z depth (metres)."""
    u, v = image_pixels(cameras.width, cameras.height)
    origins, dirs, z_per_t = camera_rays(cameras, torch.full_like(u, cam, dtype=torch.long), u, v)
    t = depth_m_to_ray_t(depth_m.reshape(-1), z_per_t, scale_factor)
    return origins + dirs * t[:, None]
