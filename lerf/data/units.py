"""Distances along rays (normalised scene units) ↔ camera depth in world units (metres).

The model works in normalised units: poses are scaled by `scale_factor` (normalised units per
world unit) so that the cameras fit [-1, 1]^3. A ray's direction is unit length, so a distance
`t` along it is `t · z_per_t` in camera z (`z_per_t` = cosine between the ray and the optical
axis, from `camera_rays`). Everything a user sees — depth maps, LERF's physical scales — is in
world units, which are metres on metric captures (Polycam, Record3D).
"""
from __future__ import annotations

from jaxtyping import Float
from torch import Tensor


def ray_t_to_depth_m(t: Float[Tensor, "*#b"], z_per_t: Float[Tensor, "*#b"], scale_factor: float
                     ) -> Float[Tensor, "*#b"]:
    """Camera-z depth in world units of the point at distance `t` (normalised) along a ray.

    Example: t = 0.5 on a ray 60° off-axis (z_per_t = 0.5), scale_factor 0.25 -> 0.5·0.5/0.25 = 1 m.
    """
    return t * z_per_t / scale_factor


def depth_m_to_ray_t(depth_m: Float[Tensor, "*#b"], z_per_t: Float[Tensor, "*#b"], scale_factor: float
                     ) -> Float[Tensor, "*#b"]:
    """Inverse of `ray_t_to_depth_m`: distance along the ray (normalised) of a camera-z depth."""
    return depth_m * scale_factor / z_per_t


def crop_size_m(crop_px_over_f: Float[Tensor, "*#b"], depth_m: Float[Tensor, "*#b"]) -> Float[Tensor, "*#b"]:
    """Physical size of an image crop seen at camera depth `depth_m`: a frustum, crop_px / f · z
    (LERF §3.1). Example: a 64 px crop, f = 640 px, at 2 m -> 0.2 m."""
    return crop_px_over_f * depth_m


def to_metres(x: Float[Tensor, "*#b"], scale_factor: float) -> Float[Tensor, "*#b"]:
    """Normalised scene units -> world units (lengths, or positions relative to the scene centre)."""
    return x / scale_factor


def metres_per_pixel(depth_z_m: Float[Tensor, "n h w"], fy_px: Float[Tensor, " n"]) -> Float[Tensor, "n h w"]:
    """Camera-z depth / focal length per pixel: what one pixel spans, in metres, at its surface.

    Example: a surface 1 m away seen with fy = 200 px -> 5 mm per pixel.
    """
    return depth_z_m / fy_px[:, None, None]
