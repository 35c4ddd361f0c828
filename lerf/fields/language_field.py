"""The language field: (position, physical scale) -> CLIP embedding, plus a DINO head.

LERF §3.2: its own hash grid(s), separate from the radiance field's, feed a shared bottleneck;
the CLIP head also takes the physical scale (metres) of the region being described, the DINO
head does not (DINO features are per pixel, scale-free).
"""
from __future__ import annotations

from typing import Iterator

import torch
from jaxtyping import Float
from torch import Tensor, nn

from lerf.config import LanguageConfig
from lerf.data.scale_modes import check_scale_mode, head_scale
from lerf.fields.encodings import mlp
from lerf.fields.nerf_field import make_grid


class LanguageField(nn.Module):
    def __init__(self, cfg: LanguageConfig, backend: str, clip_dim: int, dino_dim: int):
        super().__init__()
        if not cfg.grids:
            raise ValueError("model.language.grids is empty; the language field needs at least one hash grid")
        self.grids = nn.ModuleList([make_grid(g, backend) for g in cfg.grids])
        grid_dim = sum(g.output_dim for g in self.grids)
        self.bottleneck_mlp = mlp(grid_dim, cfg.hidden_dim, cfg.bottleneck_dim, num_hidden=1)
        self.clip_head = mlp(cfg.bottleneck_dim + 1, cfg.hidden_dim, clip_dim, num_hidden=cfg.clip_layers)
        self.dino_head = mlp(cfg.bottleneck_dim, cfg.hidden_dim, dino_dim, num_hidden=cfg.dino_layers) \
            if dino_dim > 0 else None
        self.clip_dim, self.dino_dim = clip_dim, dino_dim
        self.scale_mode = check_scale_mode(cfg.scale_mode)

    def bottleneck(self, x_unit: Float[Tensor, "n 3"]) -> Float[Tensor, "n b"]:
        feats = torch.cat([g(x_unit) for g in self.grids], dim=-1)
        return self.bottleneck_mlp(feats)

    def _head_input(self, bottleneck: Float[Tensor, "n b"], scale_m: Float[Tensor, " n"]) -> Float[Tensor, "n b1"]:
        return torch.cat([bottleneck, head_scale(self.scale_mode, scale_m)[:, None]], dim=-1)

    def clip(self, bottleneck: Float[Tensor, "n b"], scale_m: Float[Tensor, " n"]) -> Float[Tensor, "n d"]:
        """Unnormalised per-sample CLIP embedding; rays normalise after compositing."""
        return self.clip_head(self._head_input(bottleneck, scale_m))

    def clip_hidden(self, bottleneck: Float[Tensor, "n b"], scale_m: Float[Tensor, " n"]) -> Float[Tensor, "n h"]:
        """The CLIP head up to its last (linear) layer: clip = W·hidden + c."""
        return self.clip_head[:-1](self._head_input(bottleneck, scale_m))

    def clip_hidden_per_scale(self, bottleneck: Float[Tensor, "n b"], scales_m: list[float]
                              ) -> Iterator[Float[Tensor, "n h"]]:
        """`clip_hidden` of every sample at each scale in turn, for queries that search many scales.

        The head's first layer is linear in its input [bottleneck, scale]: W·[b; s] + c =
        (W_b·b + c) + s·w_s. The bottleneck part is computed once and only s·w_s changes per
        scale, which saves one of the head's layers per scale (about a third of a query's
        language pass). Equal to `clip_hidden` up to float rounding.
        """
        first = self.clip_head[0]
        width = bottleneck.shape[-1]
        base = nn.functional.linear(bottleneck, first.weight[:, :width], first.bias)
        scale_column = first.weight[:, width]
        rest = self.clip_head[1:-1]
        for s in scales_m:
            # Always a new tensor: the head's ReLUs work in place and `base` serves every scale.
            yield rest(base + head_scale(self.scale_mode, float(s)) * scale_column)

    @property
    def clip_out(self) -> nn.Linear:
        """The CLIP head's last, linear layer (W, c)."""
        return self.clip_head[-1]

    def dino(self, bottleneck: Float[Tensor, "n b"]) -> Float[Tensor, "n e"]:
        return self.dino_head(bottleneck)

    def composite_dino(self, bottleneck: Float[Tensor, "rk b"], w: Float[Tensor, "r k"]) -> Float[Tensor, "r e"]:
        """The rendered DINO feature of each ray, sum_k w_k * dino_k.

        The head's last layer is linear and nothing non-linear follows it, so it commutes with
        the weighted sum: sum_k w_k (W h_k + c) = W (sum_k w_k h_k) + (sum_k w_k) c. Applying W
        once per ray instead of once per sample saves k - 1 of every k products with the widest
        matrix (hidden x DINO dim). Equal to compositing `dino` up to float rounding.
        """
        r, k = w.shape
        hidden = self.dino_head[:-1](bottleneck).reshape(r, k, -1)
        last = self.dino_head[-1]
        mixed = torch.einsum("rk,rkh->rh", w, hidden)
        return nn.functional.linear(mixed, last.weight) + w.sum(-1, keepdim=True) * last.bias
