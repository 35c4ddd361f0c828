"""Random training rays drawn across all training images."""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Optional

import torch
from jaxtyping import Float, Int
from torch import Tensor

from lerf.data.cameras import camera_rays
from lerf.data.scene import SceneData


@dataclass
class RayBatch:
    image_idx: Int[Tensor, " r"]
    u: Float[Tensor, " r"]  # continuous pixel coordinates of the ray (pixel centres)
    v: Float[Tensor, " r"]
    origins: Float[Tensor, "r 3"]
    dirs: Float[Tensor, "r 3"]
    z_per_t: Float[Tensor, " r"]
    rgb: Float[Tensor, "r 3"]
    # Importance weight of each ray in the radiance field's losses (uniform / actual draw
    # probability), so that a rarity batch fits the NeRF as a uniform one would; None: all 1.
    ray_weight: Optional[Float[Tensor, " r"]] = None

    def subset(self, idx: Int[Tensor, " m"]) -> "RayBatch":
        """The rays `idx` of this batch (every per-ray field indexed alike)."""
        return RayBatch(**{f.name: None if getattr(self, f.name) is None else getattr(self, f.name)[idx]
                           for f in fields(self)})


def spread_indices(total: int, count: int) -> Int[Tensor, " m"]:
    """`count` indices spread evenly over range(total) (all of them when count is 0 or >= total).
    Example: total 8, count 4 -> 0, 2, 5, 7."""
    if count <= 0 or count >= total:
        return torch.arange(total)
    return torch.linspace(0, total - 1, count).round().long()


class RaySampler:
    """Uniform over (training image, pixel), or a `share` of each batch from a rarity sampler
    (lerf/train/rarity.py); all randomness from one explicit generator."""

    def __init__(self, scene: SceneData, device: torch.device, rarity=None, share: float = 0.0,
                 unbiased_nerf: bool = False):
        self.scene = scene
        self.device = device
        self.train_idx = torch.tensor(scene.train_idx, dtype=torch.long)
        self.cameras = scene.cameras.to(device)
        self.rarity, self.share = rarity, share if rarity is not None else 0.0
        self.ray_weights = self._importance_weights() if (unbiased_nerf and self.share > 0) else None

    def _importance_weights(self) -> Float[Tensor, "n h w"]:
        """uniform / mixture draw probability of every pixel, indexed by scene image: a pixel the
        rarity sampler draws 4x as often as uniform, at share 0.5, gets 1 / (0.5 + 0.5 x 4) = 0.4."""
        relative = self.rarity.relative_density(self.scene.height, self.scene.width)
        weights = torch.zeros(len(self.scene.cameras), self.scene.height, self.scene.width)
        weights[self.train_idx] = 1.0 / ((1.0 - self.share) + self.share * relative)
        return weights

    def pixels(self, num_rays: int, generator: torch.Generator
               ) -> tuple[Int[Tensor, " r"], Int[Tensor, " r"], Int[Tensor, " r"]]:
        """(scene image index, row, column) of each ray: the first round(share x r) from the
        rarity sampler, the rest uniform."""
        rare = int(round(self.share * num_rays))
        n = num_rays - rare
        img = self.train_idx[torch.randint(len(self.train_idx), (n,), generator=generator)]
        row = torch.randint(self.scene.height, (n,), generator=generator)
        col = torch.randint(self.scene.width, (n,), generator=generator)
        if rare:
            r_img, r_row, r_col = self.rarity.sample(rare, generator)
            img, row, col = torch.cat([r_img, img]), torch.cat([r_row, row]), torch.cat([r_col, col])
        return img, row, col

    def sample(self, num_rays: int, generator: torch.Generator,
               c2w: Optional[Float[Tensor, "n 3 4"]] = None) -> RayBatch:
        """`c2w` replaces the scene's poses (on the device), e.g. the pose-refined ones, so that
        gradients reach the pose corrections through the rays."""
        img, row, col = self.pixels(num_rays, generator)
        rgb = self.scene.images[img, row, col].float() / 255.0
        u, v = (col.float() + 0.5).to(self.device), (row.float() + 0.5).to(self.device)
        img_d = img.to(self.device)
        cameras = self.cameras if c2w is None else replace(self.cameras, c2w=c2w)
        origins, dirs, z_per_t = camera_rays(cameras, img_d, u, v)
        weight = None if self.ray_weights is None else self.ray_weights[img, row, col].to(self.device)
        return RayBatch(img_d, u, v, origins, dirs, z_per_t, rgb.to(self.device), weight)
