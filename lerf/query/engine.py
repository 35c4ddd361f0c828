"""Text queries against a trained model: relevancy maps with the scale searched per view.

Two paths with the same math:
- `query_exact` re-renders the view (geometry, language field, every scale) for each prompt:
  the readable reference.
- `query` renders each view once, caches what the prompt does not change — the rendered CLIP
  embeddings at every searched scale, stored exactly as factors through the CLIP head's last
  linear layer (hidden width instead of CLIP width) — and answers each new prompt with one
  matrix product against [query; canonical phrases].

The cache of one view is held to `cache_budget_bytes` (default 4 GiB). When the full factors do
not fit (1440x1080 x 30 scales x hidden width 256 is ~24 GB in fp16), the view is cached as a
low-rank projection with error bounds plus its language samples (bounded.py): the chosen scale and
peak pixel stay exact (the argument is in bounded.py), the chosen scale's map is recomputed
exactly, and the other scales' maps are bound centres.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional

import torch
from jaxtyping import Float
from torch import Tensor

from lerf.config import RelevancyConfig
from lerf.data.cameras import Cameras
from lerf.model.render_view import render_view
from lerf.model.visibility import VisibilityGrid
from lerf.query.bounded import LowRankFactors, exact_relevancy, rank_for_budget, render_low_rank, search_maps, \
    text_directions
from lerf.query.relevancy import (QueryResult, TextEmbeddings, best_scale, query_samples, relevancy,
                                  relevancy_of_differences, scale_values, search_scale, share_weighted,
                                  validate_prompt)


@dataclass
class ViewRender:
    rgb: Float[Tensor, "h w 3"]
    depth_m: Float[Tensor, "h w"]
    accumulation: Float[Tensor, "h w"]
    # Prompt-independent factors of the unit CLIP embeddings at every scale (see
    # LerfModel.clip_factors): exact, and hidden-width instead of CLIP-width. None when the
    # view is cached as `low_rank` instead (too large for the budget).
    hidden: Optional[Float[Tensor, "n s hid"]] = None  # stored at cache_dtype
    weight_sum: Optional[Float[Tensor, "n s"]] = None
    norms: Optional[Float[Tensor, "n s"]] = None
    share: Optional[Float[Tensor, " n"]] = None  # visible share of each ray's language weight
    low_rank: Optional[LowRankFactors] = None

    @property
    def cache_bytes(self) -> int:
        if self.low_rank is not None:
            return self.low_rank.nbytes
        return sum(t.numel() * t.element_size() for t in (self.hidden, self.weight_sum, self.norms, self.share))


class QueryEngine:
    def __init__(self, model, text_encoder, cfg: RelevancyConfig, chunk: int = 4096,
                 cache_dtype: torch.dtype | None = None, max_cached_views: int = 8,
                 visibility: Optional[VisibilityGrid] = None, cache_budget_bytes: int = 4 * 2**30,
                 exact_map: bool = True):
        if model.language is None:
            raise ValueError("this run has no language field (model.language.enabled=false): nothing to query")
        self.model = model.eval()
        self.cfg = cfg
        self.chunk = chunk
        self.texts = TextEmbeddings(text_encoder, cfg)
        self.scales = scale_values(cfg)
        # Samples seen by too few training views add no relevancy (None: no filter).
        self.visible = visibility.visible if (visibility is not None and cfg.visibility_filter) else None
        # fp16 halves the cache on a GPU (tensor cores read it directly); CPUs have no fast fp16
        # product, so there the cache stays fp32 and the cached path stays exact.
        self.cache_dtype = cache_dtype or (torch.float16 if self.device.type == "cuda" else torch.float32)
        # Least recently used views are dropped: one 128x128 demo view is ~120 MB at 30 scales.
        self.max_cached_views = max_cached_views
        # Per view. A view over budget is cached low-rank; `exact_map` then also recomputes the
        # chosen scale's whole map exactly (one scale's language pass; the peak is exact either way).
        self.cache_budget_bytes = cache_budget_bytes
        self.exact_map = exact_map
        self._views: OrderedDict[object, ViewRender] = OrderedDict()

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # -- rendering ------------------------------------------------------------------------------
    def full_cache_bytes(self, pixels: int) -> int:
        """Bytes of the full factor cache of a `pixels`-pixel view (hidden at cache_dtype; A and
        the norm per scale, fp32)."""
        hid = self.model.clip_hidden_width
        element = torch.empty(0, dtype=self.cache_dtype).element_size()
        return pixels * len(self.scales) * (hid * element + 8)

    def _render(self, cameras: Cameras, cam: int) -> ViewRender:
        """Render a view once: the full factor cache when it fits the budget, else the bounded one."""
        pixels = cameras.height * cameras.width
        if self.full_cache_bytes(pixels) <= self.cache_budget_bytes:
            return self._render_full(cameras, cam)
        width = self.model.clip_hidden_width + 1
        rank = rank_for_budget(pixels, len(self.scales), width, self.model.cfg.language.samples_per_ray,
                               self.cache_budget_bytes, self.cache_dtype)
        r, low_rank = render_low_rank(self.model, cameras, cam, self.scales.to(self.device), rank, self.chunk,
                                      self.cache_dtype, self.visible)
        return ViewRender(r["rgb"], r["depth_m"], r["accumulation"], low_rank=low_rank)

    def _render_full(self, cameras: Cameras, cam: int) -> ViewRender:
        """Render a view once, keeping RGB, depth and the CLIP factors at every scale."""
        scales = self.scales.to(self.device)

        def factors(out: dict[str, Tensor], z_per_t: Tensor) -> dict[str, Tensor]:
            # The cache stays on the model's device: on a GPU a new prompt never leaves it.
            pos, w, share = query_samples(self.model, out, self.visible)
            big_h, a, n = self.model.clip_factors(pos, w, scales)
            return {"hidden": big_h.transpose(0, 1).to(self.cache_dtype), "weight_sum": a.T, "norms": n.T,
                    "share": share}

        r = render_view(self.model, cameras, cam, self.chunk, extras=factors)
        n = cameras.height * cameras.width
        return ViewRender(r["rgb"], r["depth_m"], r["accumulation"], r["hidden"].reshape(n, len(scales), -1),
                          r["weight_sum"].reshape(n, len(scales)), r["norms"].reshape(n, len(scales)),
                          r["share"].reshape(n))

    def view(self, cameras: Cameras, cam: int, key: object = None) -> ViewRender:
        """The cached render of a view (rendered on first use)."""
        key = cam if key is None else key
        if key not in self._views:
            self._views[key] = self._render(cameras, cam)
            while len(self._views) > self.max_cached_views:
                self._views.popitem(last=False)
        self._views.move_to_end(key)
        return self._views[key]

    # -- relevancy ------------------------------------------------------------------------------
    def _texts(self, prompt: str) -> Float[Tensor, "t d"]:
        """[query; canonical phrases] as one matrix."""
        query = self.texts.embed([validate_prompt(prompt)])
        return torch.cat([query, self.texts.canon], 0)

    def _maps(self, render: ViewRender, texts: Float[Tensor, "t d"]) -> Float[Tensor, "s n"]:
        """Relevancy at every scale from the cached factors: one product with [query; canon]
        projected through the CLIP head's last layer."""
        g = self.model.clip_text_factors(texts.to(render.hidden.device))
        t_w, t_c = g[:, :-1].contiguous(), g[:, -1]  # [t, h], [t]
        if render.hidden.is_cuda:  # half-precision tensor cores; never a float copy of the cache
            sims = torch.matmul(render.hidden, t_w.T.to(render.hidden.dtype)).float()  # [n, s, t]
        else:  # CPUs have no fast fp16 product: (up)cast a block of rays at a time to bound memory
            sims = torch.cat([block.float() @ t_w.T for block in render.hidden.split(4096)])
        sims = (sims + render.weight_sum[..., None] * t_c) / render.norms.clamp_min(1e-12)[..., None]
        # A ray with no visible language weight has a zero embedding: relevancy 0 (as `relevancy`).
        rel = relevancy_of_differences(sims[..., :1] - sims[..., 1:], self.cfg.temperature, render.norms > 0,
                                       self.cfg.canonical_reduce)
        return share_weighted(rel.T, render.share, self.cfg).cpu()

    def _maps_low_rank(self, low_rank: LowRankFactors, texts: Float[Tensor, "t d"]
                       ) -> tuple[Float[Tensor, "s n"], int]:
        """Maps with the exact best scale and peak from the bounded cache (bounded.search_maps),
        the chosen scale's map recomputed exactly if `exact_map`; and how many (pixel, scale)
        pairs the search recomputed."""
        if self.cfg.canonical_reduce != "min":  # its bounds are derived for LERF's min (bounded.py)
            raise ValueError("relevancy.canonical_reduce=max needs the full query cache or query_exact; this view "
                             "is cached low-rank (raise the engine's cache budget)")
        dirs = text_directions(self.model, texts.to(self.device))
        scales, temperature = self.scales.tolist(), self.cfg.temperature
        share = low_rank.share if self.cfg.visible_share else None
        maps, recomputed = search_maps(self.model, low_rank, scales, dirs, temperature, self.chunk, share)
        if self.exact_map:
            idx, _ = best_scale(maps)
            pixels = torch.arange(maps.shape[1], device=maps.device)
            maps[idx] = exact_relevancy(self.model, low_rank, pixels, scales[idx], dirs, temperature, self.chunk,
                                        share)
        return maps.cpu(), recomputed

    def query(self, prompt: str, cameras: Cameras, cam: int, key: object = None) -> QueryResult:
        """Cached path: a new prompt on a rendered view costs one matrix product (full cache), or
        a bounded search plus a few exact recomputations (low-rank cache)."""
        render = self.view(cameras, cam, key)
        recomputed = None
        if render.low_rank is not None:
            maps, recomputed = self._maps_low_rank(render.low_rank, self._texts(prompt))
        else:
            maps = self._maps(render, self._texts(prompt))
        return search_scale(prompt, maps.reshape(-1, cameras.height, cameras.width), self.scales, recomputed)

    def query_exact(self, prompt: str, cameras: Cameras, cam: int) -> QueryResult:
        """Reference path: re-render everything for this prompt (relevancy per scale, per chunk)."""
        query = self.texts.embed([validate_prompt(prompt)])[0]
        scales = self.scales.to(self.device)

        def maps(out: dict[str, Tensor], z_per_t: Tensor) -> dict[str, Tensor]:
            pos, w, share = query_samples(self.model, out, self.visible)
            embeds = self.model.clip_at_scales(pos, w, scales)  # [s, r, d]
            rel = relevancy(embeds.float().cpu(), query, self.texts.canon, self.cfg.temperature,
                            self.cfg.canonical_reduce)
            return {"maps": share_weighted(rel, share.cpu(), self.cfg).T}

        r = render_view(self.model, cameras, cam, self.chunk, extras=maps)
        return search_scale(prompt, r["maps"].permute(2, 0, 1), self.scales)
