"""A memory-bounded query cache whose chosen scale and peak pixel are still exact.

The full cache (engine.py) keeps, for every pixel p and scale s, the factors of the rendered CLIP
embedding (LerfModel.clip_factors). Write them as one vector per (p, s),

    u(p, s) = [H(p, s), A(p, s)] / norm(p, s)        (hidden width + 1 numbers),

so that a text t scores sim_t(p, s) = g_t · u(p, s) with g_t = [t·W, t·c] (W, c: the CLIP head's
last linear layer; LerfModel.clip_text_factors). At 1440x1080, 30 scales and hidden width 256 that is ~24 GB in fp16.

This cache keeps instead, within a byte budget:
  * a rank-r orthonormal basis P of the u's of this view (fitted on a low-resolution render);
  * per (p, s): the coefficients c~ = round(P^T u) at the cache dtype, and two error norms, fp32:
        e_perp = ||u - P P^T u||   and   e_round = ||P^T u - c~||;
  * per pixel: the language samples (top-k positions and weights) that clip_factors reads,
    so that u(p, s) can be recomputed exactly for any few pixels at any scale.

Why the answer stays exact. Relevancy is r(p, s) = min_c sigmoid(T · d_c · u(p, s)) with
d_c = g_query - g_canon_c. Split u = P c~ + P (P^T u - c~) + (u - P P^T u); then
    |d · u - (d P) · c~| <= ||d - P P^T d|| · e_perp + ||P^T d|| · e_round =: slack_c(p, s)
(Cauchy-Schwarz on each part; the first residual is orthogonal to P, so only d's part outside P
sees it). sigmoid is increasing and min over c keeps order, so with x_c = (d_c P) · c~
    lower(p, s) = min_c sigmoid(T (x_c - slack_c)) <= r(p, s) <= min_c sigmoid(T (x_c + slack_c)) = upper(p, s).
The engine's choice (relevancy.best_scale, then the first argmax pixel) is the lexicographically
first (s, p) among the global maxima of r. L = max lower is at most that maximum, so every (p, s)
attaining it has upper >= L: only those pairs can win. They are recomputed exactly, in order of
decreasing upper bound, raising L to the best exact value found and dropping pairs whose upper
bound falls below it; the search stops when none are left, and the best exact pair (first in
(s, p) order among equals) is the answer. A small absolute margin (EPS) widens every slack to
cover float rounding in the bound arithmetic. How tight the bounds are (hence how many pairs are
recomputed) depends on r and on the view; correctness does not.

The maps returned are the bound centres min_c sigmoid(T x_c) with every recomputed pair written
in exactly; the chosen scale's map is recomputed at every pixel when `exact_map` is true (one
scale's language pass over the cached samples, no geometry). Centres never exceed an upper bound
below the answer, so best_scale and argmax over the returned maps give the exact scale and peak.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from jaxtyping import Float
from torch import Tensor

from lerf.data.cameras import Cameras
from lerf.model.render_view import render_view
from lerf.query.relevancy import Visible, query_samples, relevancy_of_differences

EPS = 1e-5  # absolute margin on similarities for float rounding in the bound arithmetic
ERROR_COLUMNS = 2  # e_perp, e_round (fp32)


@dataclass
class LowRankFactors:
    basis: Float[Tensor, "hp r"]  # orthonormal columns, fp32
    coeffs: Float[Tensor, "n s r"]  # at the cache dtype
    err_perp: Float[Tensor, "n s"]
    err_round: Float[Tensor, "n s"]
    positions: Float[Tensor, "n k 3"]  # the language samples LerfModel.clip_factors reads
    weights: Float[Tensor, "n k"]  # visibility-filtered
    share: Float[Tensor, " n"]  # visible share of each pixel's language weight (relevancy.query_samples)
    # A pixel with no (visible) language weight has relevancy 0, as in the full cache.

    @property
    def valid(self) -> Tensor:
        return self.weights.sum(-1) > 0

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.basis, self.coeffs, self.err_perp, self.err_round,
                                                          self.positions, self.weights, self.share))


def factor_rows(hidden: Float[Tensor, "s r h"], weight_sum: Tensor, norms: Float[Tensor, "s r"]
                ) -> Float[Tensor, "r s hp"]:
    """u = [H, A] / norm per ray and scale; A may be one value per ray or one per (scale, ray)."""
    a = weight_sum.expand(hidden.shape[0], -1) if weight_sum.dim() == 1 else weight_sum
    u = torch.cat([hidden, a[..., None].to(hidden.dtype)], -1) / norms.clamp_min(1e-12)[..., None]
    return u.transpose(0, 1).float()


def text_directions(model, texts: Float[Tensor, "t d"]) -> Float[Tensor, "c hp"]:
    """d_c = g_query - g_canon_c (g_t: LerfModel.clip_text_factors): sim_q - sim_c = d_c · u."""
    g = model.clip_text_factors(texts).float()
    return g[:1] - g[1:]


def project(u: Float[Tensor, "r s hp"], basis: Float[Tensor, "hp k"], dtype: torch.dtype
            ) -> dict[str, Tensor]:
    """Coefficients at `dtype` and the two error norms of the bound (see the module docstring)."""
    c = u @ basis
    stored = c.to(dtype)
    return {"coeffs": stored, "err_perp": (u - c @ basis.T).norm(dim=-1),
            "err_round": (c - stored.float()).norm(dim=-1)}


def relevancy_bounds(lr: LowRankFactors, dirs: Float[Tensor, "c hp"], temperature: float, block: int = 1 << 15,
                     share: Optional[Float[Tensor, " n"]] = None) -> tuple[Tensor, Tensor, Tensor]:
    """(centre, lower, upper) of the relevancy at every (pixel, scale), each [n, s] fp32. With
    `share`, each pixel's relevancy is multiplied by it (>= 0, so the bounds keep their order)."""
    factor = lr.valid.float() if share is None else share * lr.valid
    d_p = dirs @ lr.basis  # [c, r]
    d_perp = (dirs - d_p @ lr.basis.T).norm(dim=-1)
    d_p_norm = d_p.norm(dim=-1)
    parts = []
    for sl in (slice(i, i + block) for i in range(0, lr.coeffs.shape[0], block)):
        coeffs = lr.coeffs[sl].float()
        x = coeffs @ d_p.T  # [b, s, c]
        rounding = EPS * (1 + coeffs.norm(dim=-1, keepdim=True) + lr.err_perp[sl, :, None]) * dirs.norm(dim=-1)
        slack = lr.err_perp[sl, :, None] * d_perp + lr.err_round[sl, :, None] * d_p_norm + rounding
        parts.append(torch.stack([relevancy_of_differences(v, temperature) for v in (x, x - slack, x + slack)]))
    centre, lower, upper = (torch.cat(parts, 1) * factor[None, :, None]).unbind(0)
    return centre, lower, upper


@torch.no_grad()
def exact_relevancy(model, lr: LowRankFactors, pixels: Tensor, scale_m: float, dirs: Float[Tensor, "c hp"],
                    temperature: float, chunk: int, share: Optional[Tensor] = None) -> Float[Tensor, " m"]:
    """Relevancy of `pixels` at one scale, recomputed from their cached language samples (times
    their visible `share` when given)."""
    scale = torch.tensor([scale_m], device=lr.positions.device)
    out = []
    valid = lr.valid
    for piece in pixels.split(chunk):
        u = factor_rows(*model.clip_factors(lr.positions[piece], lr.weights[piece], scale))[:, 0]  # [m, hp]
        rel = relevancy_of_differences(u @ dirs.T, temperature, valid[piece])
        out.append(rel if share is None else rel * share[piece])
    return torch.cat(out) if out else torch.zeros(0, device=dirs.device)


def _evaluate(model, lr: LowRankFactors, flat: Tensor, scales_m: list[float], dirs: Tensor, temperature: float,
              chunk: int, share: Optional[Tensor] = None) -> Tensor:
    """Exact relevancy of (scale, pixel) pairs given as flat indices s * n + p, one pass per scale."""
    n = lr.coeffs.shape[0]
    s_idx, p_idx = flat // n, flat % n
    vals = torch.empty(flat.shape, device=dirs.device)
    for s in s_idx.unique().tolist():
        sel = s_idx == s
        vals[sel] = exact_relevancy(model, lr, p_idx[sel], scales_m[s], dirs, temperature, chunk, share)
    return vals


def search_maps(model, lr: LowRankFactors, scales_m: list[float], dirs: Float[Tensor, "c hp"], temperature: float,
                chunk: int, share: Optional[Tensor] = None, batch: int = 1 << 14
                ) -> tuple[Float[Tensor, "s n"], int]:
    """Relevancy maps whose best scale and peak are exact (module docstring): bound centres, with
    every pair that could be the maximum recomputed exactly. Returns the maps and that count.

    Example: bounds (lower, upper) = (0.60, 0.70), (0.50, 0.65), (0.20, 0.55) -> L = 0.60; the third
    pair (upper 0.55 < 0.60) is never recomputed; if the first is exactly 0.66, the second (0.65)
    is dropped too.
    """
    centre, lower, upper = relevancy_bounds(lr, dirs, temperature, share=share)
    maps = centre.T.contiguous()  # flat index s * n + p: (scale, pixel) order, as best_scale reads it
    upper = upper.T.reshape(-1)
    bound = lower.max()
    cand = (upper >= bound).nonzero().squeeze(1)
    cand = cand[upper[cand].argsort(descending=True)]
    evaluated = 0
    while cand.numel():
        take, cand = cand[:batch], cand[batch:]
        vals = _evaluate(model, lr, take, scales_m, dirs, temperature, chunk, share)
        maps.view(-1)[take] = vals
        evaluated += take.numel()
        bound = torch.maximum(bound, vals.max())
        cand = cand[upper[cand] >= bound]
    return maps, evaluated


def rank_for_budget(pixels: int, num_scales: int, width: int, samples: int, budget_bytes: int,
                    dtype: torch.dtype) -> int:
    """The largest basis rank whose cache fits `budget_bytes` (at most `width`, hidden + 1).

    Per pixel: the language samples (fp32 positions + weights), the visible share and
    RGB/depth/accumulation (fp32), and
    per scale the rank coefficients at `dtype` plus the two fp32 error norms.
    """
    fixed = pixels * (samples * 4 * 4 + 6 * 4 + num_scales * ERROR_COLUMNS * 4) + width * width * 4
    per_rank = pixels * num_scales * torch.empty(0, dtype=dtype).element_size()
    rank = min(width, (budget_bytes - fixed) // per_rank)
    if rank < 1:
        raise ValueError(f"a {budget_bytes / 2**30:.2f} GiB query cache cannot hold a {pixels}-pixel view "
                         f"(the language samples alone take {fixed / 2**30:.2f} GiB): raise the budget")
    return int(rank)


def fit_view_basis(model, cameras: Cameras, cam: int, scales: Tensor, rank: int, chunk: int,
                   visible: Optional[Visible] = None, pixels: int = 1 << 12) -> Float[Tensor, "hp r"]:
    """Basis from a low-resolution render of the same view: the top eigenvectors of sum u u^T
    over its pixels and every scale (uncentred: the bound projects u itself)."""
    f = max(1, round((cameras.height * cameras.width / pixels) ** 0.5))
    small = cameras.subset([cam]).resized(max(1, cameras.width // f), max(1, cameras.height // f))

    u = render_view(model, small, 0, chunk, extras=lambda out, z: {
        "u": factor_rows(*model.clip_factors(*query_samples(model, out, visible)[:2], scales))})["u"]
    u = u.reshape(-1, u.shape[-1]).double()
    _, vecs = torch.linalg.eigh(u.T @ u)  # ascending eigenvalues
    return vecs[:, -rank:].flip(1).float().contiguous()


def render_low_rank(model, cameras: Cameras, cam: int, scales: Tensor, rank: int, chunk: int,
                    dtype: torch.dtype, visible: Optional[Visible] = None
                    ) -> tuple[dict[str, Tensor], LowRankFactors]:
    """Render a view once into the memory-bounded cache; returns the RGB/depth/accumulation
    render (render_view's keys) and the cache."""
    basis = fit_view_basis(model, cameras, cam, scales, rank, chunk, visible)

    def factors(out: dict[str, Tensor], z_per_t: Tensor) -> dict[str, Tensor]:
        positions, weights, share = query_samples(model, out, visible)
        u = factor_rows(*model.clip_factors(positions, weights, scales))
        return {**project(u, basis, dtype), "positions": positions, "weights": weights, "share": share}

    r = render_view(model, cameras, cam, chunk, extras=factors)
    n = cameras.height * cameras.width
    lr = LowRankFactors(basis, *(r[k].reshape(n, *r[k].shape[2:]) for k in
                                 ("coeffs", "err_perp", "err_round", "positions", "weights", "share")))
    return r, lr
