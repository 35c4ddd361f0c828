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
    """Uniform over (training image, pixel); all randomness from one explicit generator."""

    def __init__(self, scene: SceneData, device: torch.device):
        self.scene = scene
        self.device = device
        self.train_idx = torch.tensor(scene.train_idx, dtype=torch.long)
        self.cameras = scene.cameras.to(device)

    def sample(self, num_rays: int, generator: torch.Generator,
               c2w: Optional[Float[Tensor, "n 3 4"]] = None) -> RayBatch:
        """`c2w` replaces the scene's poses (on the device), e.g. the pose-refined ones, so that
        gradients reach the pose corrections through the rays."""
        h, w = self.scene.height, self.scene.width
        pick = torch.randint(len(self.train_idx), (num_rays,), generator=generator)
        img = self.train_idx[pick]
        row = torch.randint(h, (num_rays,), generator=generator)
        col = torch.randint(w, (num_rays,), generator=generator)
        rgb = self.scene.images[img, row, col].float() / 255.0
        u, v = (col.float() + 0.5).to(self.device), (row.float() + 0.5).to(self.device)
        img_d = img.to(self.device)
        cameras = self.cameras if c2w is None else replace(self.cameras, c2w=c2w)
        origins, dirs, z_per_t = camera_rays(cameras, img_d, u, v)
        return RayBatch(img_d, u, v, origins, dirs, z_per_t, rgb.to(self.device))
