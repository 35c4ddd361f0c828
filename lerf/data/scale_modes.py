"""The CLIP head's scale input: what each `model.language.scale_mode` means, in one place.

Training supervises a ray with a crop of the image (a fraction `frac` of its height); the mode
says which number the CLIP head is given for that crop at each language sample, and the same
head is queried at searched scales (`relevancy.scale_min_m`..`scale_max_m`, in the mode's unit).

    depth     LERF §3.1 and the seed: the crop's physical frustum size at each sample's own camera
              depth, frac · H / fy · z_k, in metres (lerf.data.units). The default.
    authors   kerrj/lerf exactly: the crop's position in the pyramid, (frac - min) / (max - min)
              in [0, 1] (PyramidEmbeddingDataloader._random_scales), times H · ‖sample - ray
              origin‖ / fy in normalised scene units (LERFModel.get_outputs). A 5 % crop trains at
              scale 0 and a 50 % crop at twice its frustum size; queries search 0-1.5 in these
              units (LERFModelConfig.max_scale; `experiment=authors_scale`).
    no_depth  ablation: every pixel taken to be `nominal_depth_m` away (the crop's angular size).
    none      ablation: the head sees 0 whatever the scale, in training and in queries.

The scale range a run was trained at travels to its checkpoint as a `ScaleRange`, so a query can
warn when it searches scales training never saw.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from jaxtyping import Float
from torch import Tensor

from lerf.data.units import crop_px_over_f, crop_size_m, pyramid_position, ray_t_to_depth_m

SCALE_MODES = ("depth", "authors", "no_depth", "none")
AUTHORS_UNIT = "authors"  # pyramid position x normalised scene units (module docstring)


def check_scale_mode(mode: str) -> str:
    if mode not in SCALE_MODES:
        raise ValueError(f"model.language.scale_mode must be one of {SCALE_MODES}, got '{mode}'")
    return mode


def scale_unit(mode: str) -> str:
    """The unit of a mode's scales (and of the query range that goes with it)."""
    return AUTHORS_UNIT if check_scale_mode(mode) == "authors" else "m"


@dataclass
class TrainingCrops:
    """The crop each training ray is supervised with."""

    frac: Float[Tensor, " r"]  # crop side / image height
    image_height: int  # pixels
    fy_px: Float[Tensor, " r"]  # each ray's image's own focal length (the authors use camera 0's)
    min_frac: float  # the pyramid's smallest and largest crop
    max_frac: float


def training_scales(mode: str, crops: TrainingCrops, t_samples: Float[Tensor, "r k"], z_per_t: Float[Tensor, " r"],
                    scale_factor: float, nominal_depth_m: float = 1.0) -> Float[Tensor, "r k"]:
    """The scale each language sample of a training ray is supervised at (module docstring).

    `t_samples`: distances along the ray (normalised units; unit directions, so also the
    Euclidean distance from the ray's origin). Examples, a 10 % crop of a 320 px image with
    fy = 160 px (angular size 0.2), samples at t = 1 and 2, z_per_t = 0.5, 2 normalised units per
    metre: "depth" -> z = 0.25 and 0.5 m -> 0.05 and 0.1 m; "no_depth" (1.5 m) -> 0.3 m for both;
    "authors" with a 5-50 % pyramid -> position 1/9, times 320 / 160 · t -> 0.222 and 0.444.
    "none" returns the "depth" scales: the head ignores them (`head_scale`), the checkpoint's
    scale range still records what the crops were.
    """
    k = t_samples.shape[1]
    angular = crop_px_over_f(crops.frac, crops.image_height, crops.fy_px)[:, None]  # frac · H / fy
    mode = check_scale_mode(mode)
    if mode in ("depth", "none"):
        return crop_size_m(angular, ray_t_to_depth_m(t_samples, z_per_t[:, None], scale_factor))
    if mode == "no_depth":
        return crop_size_m(angular, torch.full_like(angular, nominal_depth_m)).expand(-1, k)
    position = pyramid_position(crops.frac, crops.min_frac, crops.max_frac)[:, None]
    return position * (crops.image_height / crops.fy_px)[:, None] * t_samples


def head_scale(mode: str, scale: float | Tensor) -> float | Tensor:
    """What the CLIP head is given for `scale`: the scale itself, or 0 in mode "none"."""
    if mode != "none":
        return scale
    return torch.zeros_like(scale) if torch.is_tensor(scale) else 0.0


@dataclass
class ScaleRange:
    """The scales a run's language field was supervised at (5th to 95th percentile of each batch,
    widened over the batches), and their unit ("m", or "authors": see `scale_unit`)."""

    low: float
    high: float
    unit: str = "m"

    @staticmethod
    def of(scales: Tensor, unit: str) -> "ScaleRange":
        lo, hi = torch.quantile(scales.detach().reshape(-1).float().cpu(), torch.tensor([0.05, 0.95])).tolist()
        return ScaleRange(lo, hi, unit)

    def union(self, other: Optional["ScaleRange"]) -> "ScaleRange":
        """The range covering both. Example: [0.1, 0.5] m and [0.05, 0.3] m -> [0.05, 0.5] m."""
        if other is None:
            return self
        if other.unit != self.unit:
            raise ValueError(f"cannot join scale ranges in {self.unit} and {other.unit}")
        return ScaleRange(min(self.low, other.low), max(self.high, other.high), self.unit)
