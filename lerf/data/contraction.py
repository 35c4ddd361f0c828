"""The scene's space warp: positions (normalised scene units) to the [0, 1]^3 cube the hash
grids read, and back. The model reads the fields through it; the visibility grid maps its cells back."""
from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor


CONTRACTIONS = ("linf", "l2")


def _norm(x: Float[Tensor, "n 3"], order: str) -> Float[Tensor, "n 1"]:
    if order not in CONTRACTIONS:
        raise ValueError(f"contraction must be one of {CONTRACTIONS}, got '{order}'")
    mag = x.abs().amax(-1, keepdim=True) if order == "linf" else x.norm(dim=-1, keepdim=True)
    return mag.clamp_min(1e-9)


def contract(x: Float[Tensor, "n 3"], order: str = "linf") -> Float[Tensor, "n 3"]:
    """mip-NeRF 360 contraction: points with ||x|| <= 1 stay; beyond, x -> (2 - 1/||x||) x/||x||.

    "linf" (nerfacto's hash grids, nerfstudio SceneContraction(order=inf)): all space fits
    [-2, 2]^3. "l2" (mip-NeRF 360 eq. 10; nerfstudio's SceneContraction() default, order=None,
    which the authors' LERFField uses): all space fits the ball of radius 2.
    Examples: (4, 0, 0) -> (1.75, 0, 0) either way; (1, 1, 0) stays with "linf", and with "l2"
    (||x|| = 1.414) becomes (2 - 0.707) / 1.414 · (1, 1, 0) = (0.914, 0.914, 0).
    """
    mag = _norm(x, order)
    return torch.where(mag <= 1, x, (2 - 1 / mag) * (x / mag))


def to_unit_cube(x: Float[Tensor, "n 3"], bounded: bool, bound: float, contraction: str = "linf"
                 ) -> Float[Tensor, "n 3"]:
    """Positions (normalised scene units) to the hash grid's [0, 1]^3; bounded scenes are a box
    (no contraction), unbounded ones are contracted with the `contraction` norm."""
    if bounded:
        return (x / bound + 1) / 2
    return (contract(x, contraction) + 2) / 4


def uncontract(c: Float[Tensor, "n 3"], order: str = "linf") -> Float[Tensor, "n 3"]:
    """Inverse of `contract` for ||c|| < 2. Example: (1.75, 0, 0) -> (4, 0, 0)."""
    mag = _norm(c, order)
    return torch.where(mag <= 1, c, c / mag / (2 - mag).clamp_min(1e-6))


def from_unit_cube(u: Float[Tensor, "n 3"], bounded: bool, bound: float) -> Float[Tensor, "n 3"]:
    """Inverse of `to_unit_cube` (the NeRF's, L-inf): the hash grid's [0, 1]^3 back to positions."""
    if bounded:
        return (2 * u - 1) * bound
    return uncontract(4 * u - 2)
