"""Relevancy of rendered CLIP embeddings to a text query (LERF §3.4), and the scale search."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from jaxtyping import Float
from torch import Tensor

from lerf.config import RelevancyConfig


def reduce_canonicals(pairwise: Float[Tensor, "... c"], reduce: str = "min") -> Float[Tensor, "..."]:
    """Combine the pairwise softmaxes against each canonical phrase: "min" (LERF §3.4, the
    hardest negative) or "max" (relevancy.canonical_reduce, a sensitivity row)."""
    if reduce not in ("min", "max"):
        raise ValueError(f"relevancy.canonical_reduce must be min or max, got '{reduce}'")
    return pairwise.amin(dim=-1) if reduce == "min" else pairwise.amax(dim=-1)


def relevancy_of_differences(diff: Float[Tensor, "... c"], temperature: float,
                             valid: Optional[Tensor] = None, reduce: str = "min") -> Float[Tensor, "..."]:
    """LERF §3.4's relevancy from the similarity differences diff_c = sim_query − sim_canon_c:
    min over canonical phrases c of the pairwise softmax exp(T·q) / (exp(T·q) + exp(T·c)) =
    sigmoid(T·diff_c) (`reduce="max"`: the max_canonical sensitivity row). Where `valid` is false
    (a ray with no visible language weight: a zero embedding) the relevancy is 0.

    The one home of the formula: the exact path, both query caches (and the bounded cache's
    bounds, which call it on bounds of diff: sigmoid and the min keep order), the oracle and the
    part fit all end here. Example: T = 10, diffs (0.3, 0.1) -> min(sigmoid(3), sigmoid(1)) = 0.731.
    """
    rel = reduce_canonicals(torch.sigmoid(temperature * diff), reduce)
    return rel if valid is None else torch.where(valid, rel, torch.zeros_like(rel))


def relevancy(
    embeds: Float[Tensor, "... n d"], query: Float[Tensor, " d"], canon: Float[Tensor, "c d"], temperature: float,
    reduce: str = "min",
) -> Float[Tensor, "... n"]:
    """Relevancy of unit embeddings to a query (`relevancy_of_differences`); leading dimensions
    (e.g. scales) are kept.

    All vectors are unit-normalised. Example: a query equal to a canonical phrase gives 0.5
    wherever that phrase is the hardest negative. An all-zero embedding (a ray with no visible
    language weight) has relevancy 0.
    """
    sim_q = embeds @ query  # [..., n]
    sim_c = embeds @ canon.T  # [..., n, c]
    return relevancy_of_differences(sim_q[..., None] - sim_c, temperature, embeds.abs().amax(-1) > 0, reduce)


def share_weighted(rel: Float[Tensor, "... n"], share: Float[Tensor, " n"], cfg: RelevancyConfig
                   ) -> Float[Tensor, "... n"]:
    """Relevancy times each ray's visible share (RelevancyConfig.visible_share), else unchanged.

    Example: a ray whose seen samples carry 2 % of its weight drops from 0.9 to 0.018; a ray the
    filter left whole (share 1) keeps 0.9.
    """
    return rel * share.to(rel) if cfg.visible_share else rel


def scale_values(cfg: RelevancyConfig) -> Float[Tensor, " s"]:
    """The searched physical scales in metres (LERF §3.4: 30 values over 0-2 m, evenly spaced as
    the authors' torch.linspace)."""
    return torch.linspace(cfg.scale_min_m, cfg.scale_max_m, cfg.num_scales)


def best_scale(maps: Float[Tensor, "s n"]) -> tuple[int, Float[Tensor, " n"]]:
    """Pick the scale whose map has the highest peak relevancy; returns its index and map.

    Example: peaks (0.6, 0.9, 0.7) over three scales -> index 1.
    """
    idx = int(maps.amax(dim=-1).argmax())
    return idx, maps[idx]


@dataclass
class QueryResult:
    prompt: str
    maps: Float[Tensor, "s h w"]  # relevancy at every searched scale
    scale_idx: int
    scale_m: float
    # Low-rank cache only: (pixel, scale) pairs recomputed exactly; the maps of the other scales
    # are bound centres there (bounded.py), exact in their argmax.
    recomputed: Optional[int] = None

    @property
    def relevancy(self) -> Float[Tensor, "h w"]:
        return self.maps[self.scale_idx]

    def peak(self) -> tuple[int, int]:
        """(x, y) pixel of the highest relevancy at the chosen scale."""
        w = self.maps.shape[-1]
        flat = int(self.relevancy.reshape(-1).argmax())
        return flat % w, flat // w


def search_scale(prompt: str, maps: Float[Tensor, "s h w"], scales_m: Float[Tensor, " s"],
                 recomputed: Optional[int] = None) -> QueryResult:
    """The scale search (LERF §3.4): the scale whose map over the whole view has the highest peak
    (`best_scale`). The engine's paths, the TensorBoard picture and the oracle all choose here."""
    idx, _ = best_scale(maps.reshape(maps.shape[0], -1))
    return QueryResult(prompt, maps, idx, float(scales_m[idx]), recomputed)


class TextEmbeddings:
    """Encoded prompts and canonical phrases, computed once per text."""

    def __init__(self, encoder, cfg: RelevancyConfig):
        self.encoder = encoder
        self.cfg = cfg
        self._cache: dict[str, Tensor] = {}
        self.canon = self.embed(list(cfg.canonical_phrases))

    def embed(self, texts: list[str]) -> Float[Tensor, "n d"]:
        missing = [t for t in texts if t not in self._cache]
        if missing:
            with torch.no_grad():
                vecs = self.encoder.encode_text(missing).float().cpu()
            self._cache.update(zip(missing, vecs))
        return torch.stack([self._cache[t] for t in texts])


# CLIP reads at most 77 tokens (about 300 characters of English); longer text would be cut silently.
MAX_PROMPT_CHARS = 300


def validate_prompt(prompt: Any) -> str:
    """A prompt as text, stripped; empty, null, numbers and over-long texts are a ValueError that
    says what to write instead (checked before anything is rendered)."""
    if prompt is None:
        raise ValueError("prompt is null: give a text such as prompt='red mug'")
    if isinstance(prompt, (bool, int, float)):
        raise ValueError(f"prompt {prompt!r} is a number, not text; to ask for the text write prompt=\"'{prompt}'\"")
    if not isinstance(prompt, str):
        raise ValueError(f"prompt must be text, got {type(prompt).__name__} {prompt!r}")
    if not prompt.strip():
        raise ValueError(f"empty prompt {prompt!r}: give a text such as prompt='red mug'")
    text = prompt.strip()
    if len(text) > MAX_PROMPT_CHARS:
        raise ValueError(f"prompt '{text[:40]}...' is {len(text)} characters; CLIP reads at most 77 tokens "
                         f"(about {MAX_PROMPT_CHARS} characters): shorten it")
    return text


# visible(unit-cube positions [n, 3]) -> bool [n]: whether enough training views saw each sample
Visible = Callable[[Tensor], Tensor]


def query_samples(model, out: dict[str, Tensor], visible: Optional[Visible] = None
                  ) -> tuple[Float[Tensor, "r k 3"], Float[Tensor, "r k"], Float[Tensor, " r"]]:
    """Positions and weights of the language samples of rays `out`, and each ray's visible share
    (kept weight / all weight; 1 without a filter, 0 for a ray with no weight). A sample that too
    few training views saw (`visible` false) gets weight 0: it adds no relevancy (LERF §3.4)."""
    pos, w, _ = model.language_samples(out, model.cfg.language.samples_per_ray)
    total = w.sum(-1)
    if visible is not None:
        w = w * visible(model.unit_coords(pos.reshape(-1, 3))).reshape(w.shape).to(w.dtype)
    share = torch.where(total > 0, w.sum(-1) / total.clamp_min(1e-30), torch.zeros_like(total))
    return pos, w, share
