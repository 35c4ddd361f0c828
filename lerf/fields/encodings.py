"""Small encodings shared by the fields: spherical harmonics, scene contraction, activations."""
from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor


def spherical_harmonics(dirs: Float[Tensor, "n 3"], degree: int = 4) -> Float[Tensor, "n d"]:
    """Real spherical harmonics of unit directions up to `degree` bands (degree^2 outputs, max 4).

    Constants are the standard real SH normalisations (as in Instant-NGP's SH encoding).
    Example: degree 1 gives the constant 0.28209479 for every direction.
    """
    if not 1 <= degree <= 4:
        raise ValueError(f"sh_degree must be in 1..4, got {degree}")
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, 0.28209479177387814)]
    if degree > 1:
        out += [-0.48860251190291987 * y, 0.48860251190291987 * z, -0.48860251190291987 * x]
    if degree > 2:
        xx, yy, zz = x * x, y * y, z * z
        out += [1.0925484305920792 * x * y, -1.0925484305920792 * y * z,
                0.94617469575755997 * zz - 0.31539156525251999,
                -1.0925484305920792 * x * z, 0.54627421529603959 * (xx - yy)]
    if degree > 3:
        out += [0.59004358992664352 * y * (-3 * xx + yy), 2.8906114426405538 * x * y * z,
                0.45704579946446572 * y * (1 - 5 * zz), 0.3731763325901154 * z * (5 * zz - 3),
                0.45704579946446572 * x * (1 - 5 * zz), 1.4453057213202769 * z * (xx - yy),
                0.59004358992664352 * x * (-xx + 3 * yy)]
    return torch.stack(out, dim=-1)


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


class _TruncExp(torch.autograd.Function):
    # exp() whose gradient is clamped: densities start tiny but must not blow up (Instant-NGP).
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * torch.exp(x.clamp(-15, 15))


def trunc_exp(x: Tensor) -> Tensor:
    return _TruncExp.apply(x)


def mlp(in_dim: int, hidden_dim: int, out_dim: int, num_hidden: int) -> torch.nn.Sequential:
    """Linear-ReLU stack with `num_hidden` hidden layers and a linear output."""
    layers: list[torch.nn.Module] = []
    dim = in_dim
    for _ in range(num_hidden):
        layers += [torch.nn.Linear(dim, hidden_dim), torch.nn.ReLU(inplace=True)]
        dim = hidden_dim
    layers.append(torch.nn.Linear(dim, out_dim))
    return torch.nn.Sequential(*layers)
