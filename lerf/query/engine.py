"""Text queries against a trained model: relevancy maps with the scale searched per view.

Two paths with the same math:
- `query_exact` re-renders the view (geometry, language field, every scale) for each prompt:
  the readable reference.
- `query` renders each view once, caches what the prompt does not change — the rendered CLIP
  embeddings at every searched scale, stored exactly as factors through the CLIP head's last
  linear layer (hidden width instead of CLIP width) — and answers each new prompt with one
  matrix product against [query; canonical phrases].
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
from lerf.query.relevancy import (TextEmbeddings, best_scale, relevancy, render_clip_factors, render_embeddings,
                                  scale_values, validate_prompt)
from lerf.query.render import render_view
from lerf.query.visibility import VisibilityGrid


@dataclass
class ViewRender:
    rgb: Float[Tensor, "h w 3"]
    depth_m: Float[Tensor, "h w"]
    accumulation: Float[Tensor, "h w"]
    # Prompt-independent factors of the unit CLIP embeddings at every scale (see
    # relevancy.render_clip_factors): exact, and hidden-width instead of CLIP-width.
    hidden: Float[Tensor, "n s hid"]  # stored at cache_dtype
    weight_sum: Float[Tensor, "n s"]
    norms: Float[Tensor, "n s"]

    @property
    def cache_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.hidden, self.weight_sum, self.norms))


@dataclass
class QueryResult:
    prompt: str
    maps: Float[Tensor, "s h w"]  # relevancy at every searched scale
    scale_idx: int
    scale_m: float

    @property
    def relevancy(self) -> Float[Tensor, "h w"]:
        return self.maps[self.scale_idx]

    def peak(self) -> tuple[int, int]:
        """(x, y) pixel of the highest relevancy at the chosen scale."""
        w = self.maps.shape[-1]
        flat = int(self.relevancy.reshape(-1).argmax())
        return flat % w, flat // w


class QueryEngine:
    def __init__(self, model, text_encoder, cfg: RelevancyConfig, chunk: int = 4096,
                 cache_dtype: torch.dtype | None = None, max_cached_views: int = 8,
                 visibility: Optional[VisibilityGrid] = None):
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
        self._views: OrderedDict[object, ViewRender] = OrderedDict()

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # -- rendering ------------------------------------------------------------------------------
    def _render(self, cameras: Cameras, cam: int) -> ViewRender:
        """Render a view once, keeping RGB, depth and the CLIP factors at every scale."""
        scales = self.scales.to(self.device)

        def factors(out: dict[str, Tensor], z_per_t: Tensor) -> dict[str, Tensor]:
            # The cache stays on the model's device: on a GPU a new prompt never leaves it.
            big_h, a, n = render_clip_factors(self.model, out, scales, self.visible)
            return {"hidden": big_h.transpose(0, 1).to(self.cache_dtype), "weight_sum": a.T, "norms": n.T}

        r = render_view(self.model, cameras, cam, self.chunk, extras=factors)
        n = cameras.height * cameras.width
        return ViewRender(r["rgb"], r["depth_m"], r["accumulation"], r["hidden"].reshape(n, len(scales), -1),
                          r["weight_sum"].reshape(n, len(scales)), r["norms"].reshape(n, len(scales)))

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
        layer = self.model.language.clip_out
        texts = texts.to(render.hidden.device)
        with torch.no_grad():
            t_w = texts @ layer.weight  # [t, h]
            t_c = texts @ layer.bias  # [t]
        if render.hidden.is_cuda:  # half-precision tensor cores; never a float copy of the cache
            sims = torch.matmul(render.hidden, t_w.T.to(render.hidden.dtype)).float()  # [n, s, t]
        else:  # CPUs have no fast fp16 product: (up)cast a block of rays at a time to bound memory
            sims = torch.cat([block.float() @ t_w.T for block in render.hidden.split(4096)])
        sims = (sims + render.weight_sum[..., None] * t_c) / render.norms.clamp_min(1e-12)[..., None]
        diff = sims[..., :1] - sims[..., 1:]
        rel = torch.sigmoid(self.cfg.temperature * diff).amin(-1)
        # A ray with no visible language weight has a zero embedding: relevancy 0 (as `relevancy`).
        return torch.where(render.norms > 0, rel, torch.zeros_like(rel)).T.cpu()

    def _result(self, prompt: str, maps: Float[Tensor, "s h w"]) -> QueryResult:
        idx, _ = best_scale(maps.reshape(maps.shape[0], -1))
        return QueryResult(prompt, maps, idx, float(self.scales[idx]))

    def query(self, prompt: str, cameras: Cameras, cam: int, key: object = None) -> QueryResult:
        """Cached path: a new prompt on a rendered view costs one matrix product."""
        render = self.view(cameras, cam, key)
        maps = self._maps(render, self._texts(prompt))
        return self._result(prompt, maps.reshape(-1, cameras.height, cameras.width))

    def query_exact(self, prompt: str, cameras: Cameras, cam: int) -> QueryResult:
        """Reference path: re-render everything for this prompt (relevancy per scale, per chunk)."""
        query = self.texts.embed([validate_prompt(prompt)])[0]
        scales = self.scales.to(self.device)

        def maps(out: dict[str, Tensor], z_per_t: Tensor) -> dict[str, Tensor]:
            e = render_embeddings(self.model, out, scales, self.visible).float().cpu()
            return {"maps": torch.stack([relevancy(es, query, self.texts.canon, self.cfg.temperature)
                                         for es in e], -1)}

        r = render_view(self.model, cameras, cam, self.chunk, extras=maps)
        return self._result(prompt, r["maps"].permute(2, 0, 1))
