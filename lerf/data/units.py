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


# -- the training scale of a crop, in both directions ----------------------------------------------
# A crop of `frac` x image height pixels, seen through a camera of focal length fy_px, spans the
# angle crop_px / fy = frac · H / fy; at camera depth z its physical side is that times z
# (`crop_size_m`). The query side needs the inverse: which crop fraction has a given physical side
# at a pixel (the instrument's oracle and part_fit read the pyramid there).


def crop_px_over_f(frac: Float[Tensor, "*#b"], image_height: int, fy_px: Float[Tensor, "*#b"]
                   ) -> Float[Tensor, "*#b"]:
    """The crop's angular size, crop_px / f = frac · H / fy. Example: 10 % of 320 px, fy = 160 px -> 0.2."""
    return frac * image_height / fy_px


def crop_frac_for_scale(scale_m: float | Float[Tensor, "*#b"], px_m: Float[Tensor, "*#b"], image_height: int
                        ) -> Float[Tensor, "*#b"]:
    """Inverse of the training scale: the crop fraction whose physical side is `scale_m` at a
    pixel spanning `px_m` metres (`metres_per_pixel`). Example: 0.1 m, 2 mm per pixel, H = 200 px
    -> 0.1 / (0.002 · 200) = 0.25. A pixel with no surface (px_m = inf) gives 0."""
    return scale_m / (px_m * image_height)


def pyramid_position(frac: Float[Tensor, "*#b"], min_frac: float, max_frac: float) -> Float[Tensor, "*#b"]:
    """Where a crop fraction lies in the pyramid, 0 at its smallest crop and 1 at its largest: the
    authors' training scale unit (kerrj/lerf PyramidEmbeddingDataloader._random_scales returns
    (bin + weight) · step, i.e. (frac - 0.05) / 0.45 for their 5-50 % pyramid).
    Example: 5-50 % pyramid, a 27.5 % crop -> 0.5; a single-level pyramid -> 0."""
    if max_frac <= min_frac:
        return frac * 0.0
    return (frac - min_frac) / (max_frac - min_frac)
