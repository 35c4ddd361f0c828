"""What the rest of the code may assume about an image/text encoder (CLIP-like) and a dense
feature encoder (DINO-like), plus the few helpers every encoder shares.

Two families, each a `typing.Protocol` so any class with the right attributes qualifies
(`isinstance(x, ClipEncoder)` works at run time for the attributes, not the signatures):

* `ClipEncoder` maps square crops and texts into one joint space of unit vectors; the LERF
  language field regresses these (LERF §3.1) and relevancy compares against text (§3.4).
* `DenseEncoder` maps a whole image to a grid of feature vectors (DINO, LERF §3.3's extra
  supervision), one vector per cell of `stride_px` input pixels.

Conventions shared by all implementations:
* image tensors are channels-first RGB in [0, 1]; the encoder does its own resizing and
  normalisation, so callers never need to know the model's input statistics;
* outputs are float32 on the encoder's `device`;
* `cache_key()` is a JSON-serialisable dict naming everything that changes the outputs (model,
  weights and their hash, input size, precision...). The feature cache (`cache.py`) stores it
  beside the features and recomputes when it differs.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor


class WeightsNotFoundError(FileNotFoundError):
    """Pretrained weights are neither at the given path nor downloadable (offline machine).

    The message always names the file to fetch, where it comes from, and the config key that
    points at it, so the fix never needs a look at the source.
    """


@runtime_checkable
class ClipEncoder(Protocol):
    name: str
    embed_dim: int
    input_px: int  # side of the square the model looks at; the pyramid resizes crops to it
    device: torch.device

    def cache_key(self) -> dict: ...

    def encode_crops(
        self, rgb: Float[Tensor, "n 3 s s"], ids: Optional[Int[Tensor, "n s s"]] = None
    ) -> Float[Tensor, "n d"]:
        """Unit-norm embeddings of square crops. `ids` (object ids, 0 = background) are only
        read by the synthetic reference encoder; real encoders ignore them. The reference CLIP
        encoder also takes `crop_m` (per-pixel crop size in metres); the pyramid passes it only
        when the scene provides depth (the demo scene)."""
        ...

    def encode_text(self, texts: list[str]) -> Float[Tensor, "n d"]:
        """Unit-norm embeddings of texts, in the same space as `encode_crops`."""
        ...


@runtime_checkable
class DenseEncoder(Protocol):
    name: str
    feature_dim: int
    device: torch.device

    def cache_key(self) -> dict: ...

    def grid_hw(self, height: int, width: int) -> tuple[int, int]:
        """Feature-grid size (rows, cols) that `encode_dense` returns for an image this size."""
        ...

    def stride_px(self, height: int, width: int) -> tuple[float, float]:
        """Side of one feature cell in input-image pixels, (along v, along u).

        Cell (i, j) covers rows [i·sv, (i+1)·sv) and cols [j·su, (j+1)·su); its centre is at
        u = (j + 0.5)·su, v = (i + 0.5)·sv. Not always an integer: DINO resizes the image first.
        """
        ...

    def encode_dense(
        self, rgb: Float[Tensor, "n 3 h w"], ids: Optional[Int[Tensor, "n h w"]] = None
    ) -> Float[Tensor, "n gh gw d"]: ...


def stride_from_grid(height: int, width: int, grid: tuple[int, int]) -> tuple[float, float]:
    """Cell size in pixels when a `grid` of cells exactly tiles a height x width image.

    Example: a 1080 x 1440 image on a 62 x 83 grid -> (17.42, 17.35) pixels per cell.
    """
    return height / grid[0], width / grid[1]


def unit_normalise(x: Float[Tensor, "n d"]) -> Float[Tensor, "n d"]:
    """Rows scaled to unit L2 norm (a zero row stays zero instead of becoming NaN)."""
    return F.normalize(x.float(), dim=-1, eps=1e-12)


def resize_square(rgb: Float[Tensor, "n 3 h w"], side: int) -> Float[Tensor, "n 3 side side"]:
    """Bilinear resize with antialiasing (a plain bilinear shrink of a 540 px crop to 224 px
    would alias); a no-op when the size already matches."""
    if rgb.shape[-2:] == (side, side):
        return rgb
    return F.interpolate(rgb, size=(side, side), mode="bilinear", align_corners=False, antialias=True)


def resize_ids(ids: Int[Tensor, "n h w"], size: tuple[int, int]) -> Int[Tensor, "n h2 w2"]:
    """Nearest-neighbour resize of an object-id map (ids must never be blended)."""
    if tuple(ids.shape[-2:]) == tuple(size):
        return ids
    out = F.interpolate(ids[:, None].float(), size=size, mode="nearest-exact")
    return out[:, 0].round().long()


def resize_nearest(x: Float[Tensor, "n h w"], size: tuple[int, int]) -> Float[Tensor, "n h2 w2"]:
    """Nearest-neighbour resize of a per-pixel float map (same sampling as `resize_ids`)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x[:, None].float(), size=size, mode="nearest-exact")[:, 0]


def text_seed(text: str, namespace: str) -> int:
    """A 63-bit seed from a string that is the same in every process and on every machine.

    Python's `hash(str)` is salted per process (PYTHONHASHSEED), so it cannot seed anything that
    must be reproducible; SHA-256 of the UTF-8 bytes can.
    Example: text_seed("red mug", "clip") is the same integer in every run.
    """
    digest = hashlib.sha256(f"{namespace}\x00{text}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def seeded_unit_vector(text: str, dim: int, namespace: str) -> Float[Tensor, "dim"]:
    """A fixed random unit vector for `text` (Gaussian direction, seeded by `text_seed`)."""
    gen = torch.Generator().manual_seed(text_seed(text, namespace))
    v = torch.randn(dim, generator=gen, dtype=torch.float64)
    return (v / v.norm()).float()


def file_sha256(path: str | Path, chunk_bytes: int = 1 << 24) -> str:
    """Hex SHA-256 of a file's bytes, so a cache keyed on weights survives renames and copies."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            h.update(chunk)
    return h.hexdigest()
