"""Losses of the radiance field and the proposal networks (mip-NeRF 360, Barron et al. 2022)."""
from __future__ import annotations

from typing import Optional

import torch
from jaxtyping import Float
from torch import Tensor


def ray_mean(values: Float[Tensor, "rays ..."], ray_weight: Optional[Float[Tensor, " rays"]] = None) -> Tensor:
    """Mean of per-ray (or per-ray-and-sample) values; with `ray_weight`, each ray's values times
    its importance weight (a plain mean, not divided by the weights' sum: the estimate stays
    unbiased). Example: values (1, 3), weights (2, 0) -> (2 + 0) / 2 = 1."""
    if ray_weight is None:
        return values.mean()
    return (ray_weight.reshape(-1, *([1] * (values.dim() - 1))) * values).mean()


def outer_weights(
    edges: Float[Tensor, "rays n_plus_1"], prop_edges: Float[Tensor, "rays k_plus_1"],
    prop_weights: Float[Tensor, "rays k"],
) -> Float[Tensor, "rays n"]:
    """For each target bin, the summed proposal weight of every proposal bin that overlaps it.

    Example: proposal bins (0, 0.5, 1) with weights (0.2, 0.8); a target bin (0.4, 0.6) overlaps
    both, so its outer weight is 1.0; the target bin (0.6, 1.0) overlaps only the second: 0.8.
    """
    cum = torch.cat([torch.zeros_like(prop_weights[:, :1]), torch.cumsum(prop_weights, -1)], -1)
    k = prop_weights.shape[-1]
    lo = (torch.searchsorted(prop_edges.contiguous(), edges[:, :-1].contiguous(), right=True) - 1).clamp(0, k)
    hi = torch.searchsorted(prop_edges.contiguous(), edges[:, 1:].contiguous(), right=False).clamp(0, k)
    return cum.gather(-1, hi) - cum.gather(-1, lo)


def interlevel_loss(
    edges: Float[Tensor, "rays n_plus_1"], weights: Float[Tensor, "rays n"],
    prop_edges: Float[Tensor, "rays k_plus_1"], prop_weights: Float[Tensor, "rays k"], eps: float = 1e-7,
    ray_weight: Optional[Float[Tensor, " rays"]] = None,
) -> Tensor:
    """mip-NeRF 360 eq. 13: proposal weights must bound the NeRF's; only the proposal learns.
    Averaged over rays and samples, as nerfstudio's `interlevel_loss` does.

    Example: NeRF weights (0.5, 0) in bins whose overlapping proposal weights are (0.3, 0.3)
    cost ((0.5 - 0.3)^2 / 0.5 + 0) / 2 = 0.04; where the proposal already covers them, 0.
    """
    w = weights.detach()
    outer = outer_weights(edges.detach(), prop_edges.detach(), prop_weights)
    return ray_mean((w - outer).clamp_min(0.0) ** 2 / (w + eps), ray_weight)


def distortion_loss(edges: Float[Tensor, "rays n_plus_1"], weights: Float[Tensor, "rays n"],
                    ray_weight: Optional[Float[Tensor, " rays"]] = None) -> Tensor:
    """mip-NeRF 360 eq. 15 in its O(n) form, over normalised spacing coordinates.

    sum_{i,j} w_i w_j |m_i - m_j| + 1/3 sum_i w_i^2 (s_{i+1} - s_i). Example: one bin (0, 1)
    with weight 1 -> 1/3; two bins (0, .5, 1) with weights (.5, .5) -> 2·.25·.5 + (1/3)·2·.25·.5 = 1/3.
    """
    mids = 0.5 * (edges[:, 1:] + edges[:, :-1])
    widths = edges[:, 1:] - edges[:, :-1]
    wm = weights * mids
    w_cum = torch.cumsum(weights, -1)
    wm_cum = torch.cumsum(wm, -1)
    # For i > j, |m_i - m_j| = m_i - m_j (mids are sorted): 2 * sum_i w_i (m_i W_{<i} - WM_{<i}).
    cross = 2 * (wm * (w_cum - weights) - weights * (wm_cum - wm)).sum(-1)
    self_term = (weights ** 2 * widths).sum(-1) / 3
    return ray_mean(cross + self_term, ray_weight)


def rgb_loss(pred: Float[Tensor, "rays 3"], target: Float[Tensor, "rays 3"],
             ray_weight: Optional[Float[Tensor, " rays"]] = None) -> Tensor:
    """Mean squared error, importance-weighted per ray when `ray_weight` is given (`ray_mean`)."""
    return ray_mean((pred - target) ** 2, ray_weight)
