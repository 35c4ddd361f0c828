"""Small encodings shared by the fields: spherical harmonics, activations (the scene contraction
is lerf/data/contraction.py)."""
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
