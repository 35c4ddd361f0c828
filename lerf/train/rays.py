"""Random training rays drawn across all training images."""
from __future__ import annotations

from dataclasses import dataclass, replace
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


class RaySampler:
    """Uniform over (training image, pixel), or a `share` of each batch from a rarity sampler
    (lerf/train/rarity.py); all randomness from one explicit generator."""

    def __init__(self, scene: SceneData, device: torch.device, rarity=None, share: float = 0.0):
        self.scene = scene
        self.device = device
        self.train_idx = torch.tensor(scene.train_idx, dtype=torch.long)
        self.cameras = scene.cameras.to(device)
        self.rarity, self.share = rarity, share if rarity is not None else 0.0

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
        return RayBatch(img_d, u, v, origins, dirs, z_per_t, rgb.to(self.device))
