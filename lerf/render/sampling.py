"""Ray sampling: box intersection, spacing functions and inverse-CDF (proposal) resampling.

Samples are kept as bin edges in a normalised "spacing" coordinate s in [0, 1] between the
ray's near and far; `spacing_to_t` maps them to distances. Bounded scenes space samples
linearly in t; unbounded ones use nerfacto's piecewise spacing (linear up to t = 1, linear
in disparity beyond), so that contracted space is sampled evenly.
"""
from __future__ import annotations

from typing import Optional

import torch
from jaxtyping import Float
from torch import Tensor


def intersect_box(
    origins: Float[Tensor, "rays 3"], dirs: Float[Tensor, "rays 3"], bound: float
) -> tuple[Float[Tensor, " rays"], Float[Tensor, " rays"]]:
    """Entry and exit distances of rays through the box [-bound, bound]^3 (slab method).

    Rays that miss get near == far (an empty interval). Example: origin (0, 0, -3), direction
    (0, 0, 1), bound 1 -> near 2, far 4.
    """
    safe = torch.where(dirs.abs() < 1e-9, torch.full_like(dirs, 1e-9), dirs)
    t0 = (-bound - origins) / safe
    t1 = (bound - origins) / safe
    near = torch.minimum(t0, t1).amax(-1).clamp_min(0.0)
    far = torch.maximum(t0, t1).amin(-1)
    far = torch.maximum(far, near)
    return near, far


def _piecewise(t: Tensor) -> Tensor:
    # nerfacto's UniformLinDispPiecewiseSampler spacing: t/2 below 1, 1 - 1/(2t) beyond.
    return torch.where(t < 1, t / 2, 1 - 1 / (2 * t.clamp_min(1e-6)))


def _piecewise_inv(s: Tensor) -> Tensor:
    return torch.where(s < 0.5, 2 * s, 1 / (2 * (1 - s).clamp_min(1e-6)))


def spacing_to_t(
    s: Float[Tensor, "rays n"], near: Float[Tensor, " rays"], far: Float[Tensor, " rays"], kind: str
) -> Float[Tensor, "rays n"]:
    """Map normalised spacing s in [0, 1] to distance t in [near, far].

    Example (linear): near 2, far 4, s = 0.25 -> t = 2.5.
    """
    if kind == "linear":
        return near[:, None] + s * (far - near)[:, None]
    if kind == "piecewise":
        g_near, g_far = _piecewise(near)[:, None], _piecewise(far)[:, None]
        return _piecewise_inv(g_near + s * (g_far - g_near))
    raise ValueError(f"unknown spacing '{kind}' (expected linear | piecewise)")


def uniform_bins(
    num_rays: int, num_samples: int, jitter: bool, device: torch.device, generator: Optional[torch.Generator] = None
) -> Float[Tensor, "rays samples_plus_1"]:
    """Evenly spaced bin edges in s (stratified: jittered by up to half a bin in training)."""
    edges = torch.linspace(0.0, 1.0, num_samples + 1, device=device).expand(num_rays, -1)
    if jitter:
        mids = 0.5 * (edges[:, 1:] + edges[:, :-1])
        lower = torch.cat([edges[:, :1], mids], -1)
        upper = torch.cat([mids, edges[:, -1:]], -1)
        u = torch.rand(lower.shape, device=device, generator=generator)
        edges = lower + (upper - lower) * u
        # Keep the ends fixed so the bins always cover [near, far].
        edges[:, 0], edges[:, -1] = 0.0, 1.0
    return edges.contiguous()


def sample_pdf(
    bins: Float[Tensor, "rays k_plus_1"],
    weights: Float[Tensor, "rays k"],
    num_samples: int,
    jitter: bool,
    padding: float = 0.01,
    generator: Optional[torch.Generator] = None,
) -> Float[Tensor, "rays n_plus_1"]:
    """Draw `num_samples` new bins (num_samples + 1 edges) by inverting the weights' CDF.

    `padding` keeps every bin reachable so the proposal cannot starve a region forever.
    Example: bins (0, 0.5, 1), weights (0, 1), 2 samples, no jitter -> edges (0.5, 0.75, 1)
    up to the padding.
    """
    w = weights.detach() + padding
    pdf = w / w.sum(-1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[:, :1]), torch.cumsum(pdf, -1)], -1).clamp(max=1.0)
    n_edges = num_samples + 1
    if jitter:
        u = (torch.arange(n_edges, device=bins.device) + torch.rand(
            (bins.shape[0], n_edges), device=bins.device, generator=generator)) / n_edges
    else:
        u = torch.linspace(0.0, 1.0, n_edges, device=bins.device).expand(bins.shape[0], -1)
    u = u.clamp(0.0, 1.0 - 1e-6).contiguous()
    idx = torch.searchsorted(cdf.contiguous(), u, right=True)
    below = (idx - 1).clamp(0, cdf.shape[-1] - 1)
    above = idx.clamp(0, cdf.shape[-1] - 1)
    cdf_lo, cdf_hi = cdf.gather(-1, below), cdf.gather(-1, above)
    bin_lo, bin_hi = bins.gather(-1, below), bins.gather(-1, above)
    denom = torch.where(cdf_hi - cdf_lo < 1e-8, torch.ones_like(cdf_lo), cdf_hi - cdf_lo)
    frac = ((u - cdf_lo) / denom).clamp(0.0, 1.0)
    edges = bin_lo + frac * (bin_hi - bin_lo)
    return torch.sort(edges, dim=-1).values.detach()
