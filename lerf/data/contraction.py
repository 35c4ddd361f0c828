"""The scene's space warp: positions (normalised scene units) to the [0, 1]^3 cube the hash
grids read, and back. The model reads the fields through it; the visibility grid maps its cells back."""
from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor


def contract(x: Float[Tensor, "n 3"]) -> Float[Tensor, "n 3"]:
    """mip-NeRF 360 contraction with the L-inf norm (as nerfacto uses for hash grids).

    Points with ||x||_inf <= 1 stay; beyond, x -> (2 - 1/||x||) x/||x||, so all space fits in
    [-2, 2]^3. Example: (4, 0, 0) -> (1.75, 0, 0).
    """
    mag = x.abs().amax(-1, keepdim=True).clamp_min(1e-9)
    return torch.where(mag <= 1, x, (2 - 1 / mag) * (x / mag))


def to_unit_cube(x: Float[Tensor, "n 3"], bounded: bool, bound: float) -> Float[Tensor, "n 3"]:
    """Positions (normalised scene units) to the hash grid's [0, 1]^3."""
    if bounded:
        return (x / bound + 1) / 2
    return (contract(x) + 2) / 4


def uncontract(c: Float[Tensor, "n 3"]) -> Float[Tensor, "n 3"]:
    """Inverse of `contract` for ||c||_inf < 2. Example: (1.75, 0, 0) -> (4, 0, 0)."""
    mag = c.abs().amax(-1, keepdim=True).clamp_min(1e-9)
    return torch.where(mag <= 1, c, c / mag / (2 - mag).clamp_min(1e-6))


def from_unit_cube(u: Float[Tensor, "n 3"], bounded: bool, bound: float) -> Float[Tensor, "n 3"]:
    """Inverse of `to_unit_cube`: the hash grid's [0, 1]^3 back to positions (normalised units)."""
    if bounded:
        return (2 * u - 1) * bound
    return uncontract(4 * u - 2)
