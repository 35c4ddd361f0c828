"""The radiance field (nerfacto-style) and the proposal density networks."""
from __future__ import annotations

from typing import Optional

import torch
from jaxtyping import Float
from torch import Tensor, nn

from lerf.config import GridConfig
from lerf.fields.encodings import mlp, spherical_harmonics, trunc_exp
from lerf.fields.hashgrid import HashGrid


def make_grid(cfg: GridConfig, backend: str) -> HashGrid:
    return HashGrid(num_levels=cfg.num_levels, features_per_level=cfg.features_per_level,
                    log2_hashmap_size=cfg.log2_hashmap_size, base_resolution=cfg.base_resolution,
                    max_resolution=cfg.max_resolution, backend=backend)


class NerfField(nn.Module):
    """Hash grid + small MLP -> density and a geometry feature; colour MLP on (feature, SH(dir))
    and, when `appearance_dim` > 0, the frame's appearance vector (lerf.fields.appearance)."""

    def __init__(self, grid: GridConfig, backend: str, hidden_dim: int = 64, geo_feat_dim: int = 15,
                 color_hidden_dim: int = 64, sh_degree: int = 4, appearance_dim: int = 0):
        super().__init__()
        self.grid = make_grid(grid, backend)
        self.sh_degree = sh_degree
        self.appearance_dim = appearance_dim
        self.density_mlp = mlp(self.grid.output_dim, hidden_dim, 1 + geo_feat_dim, num_hidden=1)
        self.color_mlp = mlp(geo_feat_dim + sh_degree ** 2 + appearance_dim, color_hidden_dim, 3, num_hidden=2)

    def density(self, x_unit: Float[Tensor, "n 3"]) -> tuple[Float[Tensor, " n"], Float[Tensor, "n g"]]:
        h = self.density_mlp(self.grid(x_unit))
        # The -1 bias starts densities low (about e^-1), so early rays see through empty space.
        return trunc_exp(h[:, 0] - 1.0), h[:, 1:]

    def forward(self, x_unit: Float[Tensor, "n 3"], dirs: Float[Tensor, "n 3"],
                appearance: Optional[Float[Tensor, "n a"]] = None) -> tuple[Float[Tensor, " n"], Float[Tensor, "n 3"]]:
        sigma, geo = self.density(x_unit)
        inputs = [geo, spherical_harmonics(dirs, self.sh_degree)]
        if self.appearance_dim:
            if appearance is None:
                raise ValueError("this field has an appearance embedding: pass the samples' appearance vectors")
            inputs.append(appearance)
        rgb = torch.sigmoid(self.color_mlp(torch.cat(inputs, -1)))
        return sigma, rgb


class ProposalField(nn.Module):
    """A density-only field used to place the next level's samples."""

    def __init__(self, grid: GridConfig, backend: str, hidden_dim: int = 16):
        super().__init__()
        self.grid = make_grid(grid, backend)
        self.mlp = mlp(self.grid.output_dim, hidden_dim, 1, num_hidden=1)

    def forward(self, x_unit: Float[Tensor, "n 3"]) -> Float[Tensor, " n"]:
        return trunc_exp(self.mlp(self.grid(x_unit))[:, 0] - 1.0)
