"""Synthetic reference encoders: a TEST INSTRUMENT for the demo scene and the test-suite.

They are not models of anything. They replace CLIP and DINO on a synthetic scene whose object
ids are known per pixel, so that the whole LERF pipeline (pyramid -> field -> relevancy) can be
checked end to end with an answer known in advance, offline and in seconds. Never use them for a
real capture: they require object-id masks and carry no visual understanding.

`ReferenceClipEncoder`: every name gets a fixed random unit vector seeded from its text
(SHA-256, identical in every process). A crop's embedding is the pixel-count-weighted mix of the
vectors of the ids it covers, renormalised; the text of an object's name returns exactly that
object's vector. So "red mug" is maximally relevant where the crop is all mug, half as aligned
(in the mixed direction) where it is half mug, and the canonical phrases ("object", "things",
"stuff", "texture") are unrelated random directions, as LERF's relevancy score expects.

`ReferenceDinoEncoder`: per-pixel feature = seeded vector of the pixel's object id + a fixed
projection of its RGB, averaged over `stride_px`-sized cells (like a patch encoder).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from lerf.encoders.base import seeded_unit_vector, stride_from_grid, unit_normalise

BACKGROUND_ID = 0
BACKGROUND_NAME = "background"
CLIP_NAMESPACE = "lerf-reference-clip"
DINO_NAMESPACE = "lerf-reference-dino"


def canonical_text(text: str) -> str:
    """Case and surrounding spaces do not change a name: "Red Mug " == "red mug"."""
    return text.strip().lower()


class ReferenceClipEncoder:
    """Test instrument (see module docstring). `labels`: object id -> name, id 0 excluded.

    Example:
        enc = ReferenceClipEncoder({1: "red mug", 2: "table"}, dim=128)
        ids = torch.ones(1, 8, 8, dtype=torch.long)          # a crop entirely on the mug
        enc.encode_crops(torch.zeros(1, 3, 8, 8), ids)       # == enc.encode_text(["red mug"])
        ids[:, :, 4:] = 2                                    # half mug, half table
        # -> normalise(v_mug + v_table)
    """

    def __init__(self, labels: dict[int, str], dim: int = 128, device: str | torch.device = "cpu",
                 input_px: int = 32):
        if BACKGROUND_ID in labels and canonical_text(labels[BACKGROUND_ID]) != BACKGROUND_NAME:
            raise ValueError(f"id {BACKGROUND_ID} is the background; labels give it {labels[0]!r}")
        names = {BACKGROUND_ID: BACKGROUND_NAME, **{int(k): v for k, v in labels.items()}}
        self.labels = dict(sorted(names.items()))
        self.embed_dim = dim
        self.device = torch.device(device)
        # Crops are resized to this before mixing: ids are resampled nearest-neighbour, so the
        # pixel counts are those of the resized crop. Small keeps the pyramid cheap.
        self.input_px = input_px
        self.name = f"reference_clip_{dim}"
        max_id = max(self.labels)
        self._table = torch.zeros(max_id + 1, dim)  # row k = vector of id k (zero for unused ids)
        self._known = torch.zeros(max_id + 1, dtype=torch.bool)
        for k, name in self.labels.items():
            self._table[k] = self.text_vector(name)
            self._known[k] = True

    def text_vector(self, text: str) -> Float[Tensor, "d"]:
        return seeded_unit_vector(canonical_text(text), self.embed_dim, CLIP_NAMESPACE)

    def cache_key(self) -> dict:
        return {"encoder": "reference_clip", "dim": self.embed_dim, "input_px": self.input_px,
                "labels": {str(k): v for k, v in self.labels.items()}}

    def encode_crops(
        self, rgb: Float[Tensor, "n 3 s s"], ids: Optional[Int[Tensor, "n s s"]] = None
    ) -> Float[Tensor, "n d"]:
        if ids is None:
            raise ValueError("ReferenceClipEncoder needs object-id masks (ids=...); it is a test "
                             "instrument for the synthetic scene, not an image model")
        ids = ids.long().cpu()
        known = (ids >= 0) & (ids < len(self._known))
        if not bool(known.all()) or not bool(self._known[ids[known]].all()):
            bad = sorted(set(ids.unique().tolist()) - set(self.labels))
            raise ValueError(f"ids {bad} are not in labels {self.labels}")
        # counts[c, k] = how many pixels of crop c carry id k.
        n, k = ids.shape[0], len(self._table)
        flat = (ids.flatten(1) + k * torch.arange(n)[:, None]).flatten()
        counts = torch.bincount(flat, minlength=n * k).view(n, k).float()
        return unit_normalise(counts @ self._table).to(self.device)

    def encode_text(self, texts: list[str]) -> Float[Tensor, "n d"]:
        return torch.stack([self.text_vector(t) for t in texts]).to(self.device)


class ReferenceDinoEncoder:
    """Test instrument (see module docstring): DINO-like dense features from ids and colour.

    feature(pixel) = v_id + P·(rgb - 0.5), where v_id is a seeded unit vector per object id
    (zero when no ids are given) and P a fixed seeded dim x 3 matrix; cells average the pixels
    they cover. An image of h x w pixels gives a grid of round(h/stride) x round(w/stride) cells.
    """

    def __init__(self, dim: int = 64, stride_px: int = 4, device: str | torch.device = "cpu"):
        self.feature_dim = dim
        self.nominal_stride_px = stride_px
        self.device = torch.device(device)
        self.name = f"reference_dino_{dim}"
        cols = [seeded_unit_vector(f"rgb{c}", dim, DINO_NAMESPACE) for c in range(3)]
        self._rgb_proj = torch.stack(cols, dim=1)  # (dim, 3)

    def id_vector(self, object_id: int) -> Float[Tensor, "d"]:
        return seeded_unit_vector(f"id{object_id}", self.feature_dim, DINO_NAMESPACE)

    def cache_key(self) -> dict:
        return {"encoder": "reference_dino", "dim": self.feature_dim, "stride_px": self.nominal_stride_px}

    def grid_hw(self, height: int, width: int) -> tuple[int, int]:
        s = self.nominal_stride_px
        return max(1, round(height / s)), max(1, round(width / s))

    def stride_px(self, height: int, width: int) -> tuple[float, float]:
        return stride_from_grid(height, width, self.grid_hw(height, width))

    def encode_dense(
        self, rgb: Float[Tensor, "n 3 h w"], ids: Optional[Int[Tensor, "n h w"]] = None
    ) -> Float[Tensor, "n gh gw d"]:
        rgb = rgb.float().cpu()
        feats = torch.einsum("dc,nchw->ndhw", self._rgb_proj, rgb - 0.5)
        if ids is not None:
            ids = ids.long().cpu()
            table = torch.stack([self.id_vector(k) for k in range(int(ids.max()) + 1)])
            feats = feats + table[ids].permute(0, 3, 1, 2)
        # Adaptive pooling: cell i averages rows [floor(i·h/gh), ceil((i+1)·h/gh)).
        pooled = F.adaptive_avg_pool2d(feats, self.grid_hw(*rgb.shape[-2:]))
        return pooled.permute(0, 2, 3, 1).contiguous().to(self.device)
