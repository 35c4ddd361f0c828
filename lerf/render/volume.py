"""Volume rendering as plain functions over per-ray sample tensors."""
from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor


def render_weights(
    density: Float[Tensor, "rays samples"], deltas: Float[Tensor, "rays samples"]
) -> Float[Tensor, "rays samples"]:
    """Quadrature weights w_i = T_i (1 - exp(-sigma_i delta_i)), T_i = exp(-sum_{j<i} sigma_j delta_j).

    Example: density (1, 1, 1), deltas (ln 2, ln 2, ln 2): each sample lets half through, so
    alpha = (0.5, 0.5, 0.5), T = (1, 0.5, 0.25) and w = (0.5, 0.25, 0.125).
    """
    tau = density * deltas
    alpha = 1.0 - torch.exp(-tau)
    # Exclusive cumulative sum: light reaching sample i has crossed samples 0..i-1.
    tau_before = torch.cumsum(tau, dim=-1) - tau
    return alpha * torch.exp(-tau_before)


def composite(
    weights: Float[Tensor, "rays samples"], values: Float[Tensor, "rays samples channels"]
) -> Float[Tensor, "rays channels"]:
    """Weighted sum of per-sample values along each ray.

    Example: w = (0.5, 0.25), values = (1, 3) -> 0.5 + 0.75 = 1.25.
    """
    return torch.einsum("rs,rsc->rc", weights, values)


def expected_depth(
    weights: Float[Tensor, "rays samples"], t_mid: Float[Tensor, "rays samples"], eps: float = 1e-10
) -> Float[Tensor, " rays"]:
    """Weight-normalised mean distance; a ray with no weight gets its last sample's distance.

    Example: w = (0.5, 0.5), t = (1, 3) -> 2.
    """
    acc = weights.sum(-1)
    depth = (weights * t_mid).sum(-1) / acc.clamp_min(eps)
    return torch.where(acc > eps, depth, t_mid[:, -1])


def add_background(
    rgb: Float[Tensor, "rays 3"], accumulation: Float[Tensor, " rays"], background: Float[Tensor, "rays 3"]
) -> Float[Tensor, "rays 3"]:
    """Composite onto a background: rgb + (1 - acc) * bg. Example: rgb 0.2, acc 0.5, bg 1 -> 0.7."""
    return rgb + (1.0 - accumulation)[:, None] * background
