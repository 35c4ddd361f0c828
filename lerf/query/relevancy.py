"""Relevancy of rendered CLIP embeddings to a text query (LERF §3.4), and the scale search."""
from __future__ import annotations

import math
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


def relevancy(
    embeds: Float[Tensor, "n d"], query: Float[Tensor, " d"], canon: Float[Tensor, "c d"], temperature: float,
    reduce: str = "min",
) -> Float[Tensor, " n"]:
    """min over canonical phrases of the pairwise softmax exp(T·q) / (exp(T·q) + exp(T·c)).

    All vectors are unit-normalised. Two-way softmax = sigmoid(T·(sim_q − sim_c)). Example: a
    query equal to a canonical phrase gives 0.5 wherever that phrase is the hardest negative.
    An all-zero embedding (a ray with no visible language weight) has relevancy 0.
    """
    sim_q = embeds @ query  # [n]
    sim_c = embeds @ canon.T  # [n, c]
    rel = reduce_canonicals(torch.sigmoid(temperature * (sim_q[:, None] - sim_c)), reduce)
    return torch.where(embeds.abs().amax(-1) > 0, rel, torch.zeros_like(rel))


def share_weighted(rel: Float[Tensor, "... n"], share: Float[Tensor, " n"], cfg: RelevancyConfig
                   ) -> Float[Tensor, "... n"]:
    """Relevancy times each ray's visible share (RelevancyConfig.visible_share), else unchanged.

    Example: a ray whose seen samples carry 2 % of its weight drops from 0.9 to 0.018; a ray the
    filter left whole (share 1) keeps 0.9.
    """
    return rel * share.to(rel) if cfg.visible_share else rel


def scale_values(cfg: RelevancyConfig) -> Float[Tensor, " s"]:
    """The searched physical scales in metres (LERF §3.4: 30 values over 0-2 m, evenly spaced;
    `scale_spacing=geometric`: in a constant ratio, e.g. 0.03, 0.06, 0.12 m for 3 values to 0.12)."""
    if cfg.scale_spacing == "geometric":  # RelevancyConfig checked scale_min_m > 0
        return torch.logspace(math.log10(cfg.scale_min_m), math.log10(cfg.scale_max_m), cfg.num_scales)
    return torch.linspace(cfg.scale_min_m, cfg.scale_max_m, cfg.num_scales)


def best_scale(maps: Float[Tensor, "s n"]) -> tuple[int, Float[Tensor, " n"]]:
    """Pick the scale whose map has the highest peak relevancy; returns its index and map.

    Example: peaks (0.6, 0.9, 0.7) over three scales -> index 1.
    """
    idx = int(maps.amax(dim=-1).argmax())
    return idx, maps[idx]


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


def relevancy_renderer(model, text_encoder, prompt: str, cfg: RelevancyConfig) -> Callable:
    """An `extras` callback for `render_view`: relevancy of one prompt at the best scale.

    Used for TensorBoard images: every scale is rendered per chunk and the best scale chosen
    per chunk, which is cheap and close enough for a progress picture (query.py searches the
    scale over the whole view).
    """
    texts = TextEmbeddings(text_encoder, cfg)
    query = texts.embed([validate_prompt(prompt)])[0]
    scales = scale_values(cfg)

    def fn(out: dict[str, Tensor], z_per_t: Tensor) -> dict[str, Tensor]:
        embeds, _ = render_embeddings(model, out, scales)  # [s, r, d]; nothing filtered: share 1
        maps = torch.stack([relevancy(e.cpu(), query, texts.canon, cfg.temperature, cfg.canonical_reduce)
                            for e in embeds])
        _, best = best_scale(maps)
        return {"relevancy": best}

    return fn


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


def render_embeddings(model, out: dict[str, Tensor], scales_m: Float[Tensor, " s"],
                      visible: Optional[Visible] = None) -> tuple[Float[Tensor, "s r d"], Float[Tensor, " r"]]:
    """Rendered, unit-norm CLIP embeddings of rays `out` at each scale (zero for a ray with no
    visible weight), and each ray's visible share (query_samples); geometry and the bottleneck
    are shared across scales, only the CLIP head runs per scale. Every sample of a query takes
    the searched scale (as in the authors' code)."""
    pos, w, share = query_samples(model, out, visible)
    bottleneck = model.language_bottleneck(pos)
    embeds = torch.stack([model.composite_clip(bottleneck, w, torch.full_like(w, float(s)))
                          for s in scales_m.tolist()])
    return embeds, share


def render_clip_factors(model, out: dict[str, Tensor], scales_m: Float[Tensor, " s"],
                        visible: Optional[Visible] = None
                        ) -> tuple[Float[Tensor, "s r h"], Float[Tensor, "s r"], Float[Tensor, "s r"],
                                   Float[Tensor, " r"]]:
    """Prompt-independent factors of the rendered embeddings, exact and smaller than them.

    The CLIP head ends in a linear layer (W, c): sample k's output is W h_k + c. With per-sample
    normalisation each is divided by n_k = ||W h_k + c|| (prompt-independent) before the weighted
    sum, so a ray's unnormalised embedding is W·H + c·A with H = sum_k (w_k/n_k) h_k (hidden
    width) and A = sum_k w_k/n_k (n_k = 1 without it). Returns H and A per scale, and the norm
    ||W·H + c·A|| per scale; a text t then scores ((t·W)·H + (t·c)·A) / norm — the same as
    t·normalize(embedding). Also returns each ray's visible share (query_samples).
    """
    pos, w, share = query_samples(model, out, visible)
    return (*clip_factors(model, pos, w, scales_m), share)


def clip_factors(model, pos: Float[Tensor, "r k 3"], w: Float[Tensor, "r k"], scales_m: Float[Tensor, " s"]
                 ) -> tuple[Float[Tensor, "s r h"], Float[Tensor, "s r"], Float[Tensor, "s r"]]:
    """`render_clip_factors` of given language samples (positions, weights).

    A sample of weight 0 (one the visibility filter dropped: about 10 % on the demo's views)
    adds nothing to H or A, so the field runs only on the others; the dropped ones enter the
    sums as exact zeros, as they did when the head ran on them.
    """
    r, k = w.shape
    kept = (w.reshape(-1) > 0).nonzero().squeeze(-1)
    bottleneck = model.language_bottleneck(pos.reshape(-1, 3)[kept])
    layer = model.language.clip_out
    normalize = model.cfg.language.normalize_samples
    hidden, wsums, norms = [], [], []
    for h_kept in model.language.clip_hidden_per_scale(bottleneck, scales_m.tolist()):
        h = h_kept.new_zeros(r * k, h_kept.shape[-1]).index_copy_(0, kept, h_kept)
        wk = w
        if normalize:
            norm = w.new_ones(r * k).index_copy_(0, kept, layer(h_kept).norm(dim=-1).clamp_min(1e-12))
            wk = w / norm.reshape(r, k)
        big_h = torch.einsum("rk,rkh->rh", wk, h.reshape(r, k, -1))
        a = wk.sum(-1)
        hidden.append(big_h)
        wsums.append(a)
        norms.append((big_h @ layer.weight.T + a[:, None] * layer.bias).norm(dim=-1))
    return torch.stack(hidden), torch.stack(wsums), torch.stack(norms)
