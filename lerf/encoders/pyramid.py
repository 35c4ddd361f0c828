"""The multi-scale CLIP feature pyramid (LERF §3.1) and the DINO feature maps (LERF §3.3).

CLIP pyramid. For every training image and every crop fraction f (crop side = f x image
height), square crops on a regular grid are embedded by the CLIP encoder. LERF uses 7 levels,
f linearly spaced from 0.05 to 0.5 (paper §3.1; authors' code: `torch.linspace(0.05, 0.5, 7)`,
datamanager `patch_tile_size_range=(0.05, 0.5)`, `patch_tile_size_res=7`).

Stride. Half the crop side, except at the smallest crops: the authors' code
(`PyramidEmbeddingDataloader._stride_scaler`) interpolates the stride ratio from 1.0 at f = 0.05
to `stride_scaler` = 0.5 at f >= 0.15, so the (many) smallest crops do not overlap.

Crop grid (our choice; the authors zero-pad the image by half a crop instead). Every crop lies
inside the image, so no crop embeds black padding: along an axis of `extent` pixels, crop side c
and nominal stride s, there are n = ceil((extent - c) / s) + 1 crops whose top-left positions
are round(linspace(0, extent - c, n)) — the first touches one border, the last the other, and the
actual spacing is <= s. A crop's centre is top + c/2 (continuous pixel coordinates: pixel (i, j)
has centre (u, v) = (j + 0.5, i + 0.5), so a crop [top, top + c) has centre top + c/2). If the
crop is wider than the image (a portrait image at large f), it shrinks to the image's short side.

Lookup. Bilinear between the four nearest crop centres of a level (clamped to the outermost
centres: a pixel near the border takes the border crop's value, and that crop covers it), then
linear in f between the two nearest levels (clamped at min_frac / max_frac). The result is the
interpolated (not renormalised) float32 vector, as the authors use for their training target
(`_random_scales` returns the raw lerp).

DINO maps. One feature per encoder cell, stored at the encoder's grid resolution (never
upsampled on disk); lookup is bilinear between cell centres (u = (j + 0.5)·su), clamped.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Iterator, Optional, Sequence

import numpy as np
import torch
from jaxtyping import Float, Int, UInt8
from torch import Tensor
from tqdm.auto import tqdm

from lerf.encoders.base import ClipEncoder, DenseEncoder, resize_ids, resize_nearest, resize_square
from lerf.encoders.interp import axis_lerp, pad_centres, uniform_axis_lerp, weighted_sum

Images = Float[Tensor, "n h w 3"] | UInt8[Tensor, "n h w 3"]
STORE_DTYPE = np.float16  # LERF's cache is fp16 too; halves disk and RAM, ~1e-3 relative error


def linspace_fracs(min_frac: float = 0.05, max_frac: float = 0.5, levels: int = 7) -> list[float]:
    """LERF's crop fractions: `levels` values linearly spaced in [min_frac, max_frac].

    Example: linspace_fracs() -> [0.05, 0.125, 0.2, 0.275, 0.35, 0.425, 0.5]. Equal ends mean a
    single-scale pyramid: linspace_fracs(0.25, 0.25, 7) -> [0.25].
    """
    if min_frac == max_frac:
        return [round(float(min_frac), 12)]
    return [round(float(f), 12) for f in np.linspace(min_frac, max_frac, levels)]


def stride_ratio(crop_frac: float, stride_scaler: float = 0.5) -> float:
    """Stride as a fraction of the crop side (authors' `_stride_scaler`): 1.0 at f = 0.05, going
    linearly to `stride_scaler` at f = 0.15 and constant after.

    Example: 0.05 -> 1.0, 0.1 -> 0.75, 0.125 -> 0.625, 0.2 -> 0.5.
    """
    return float(np.interp(crop_frac, [0.05, 0.15], [1.0, stride_scaler]))


def crop_positions(extent: int, crop: int, stride: float) -> list[int]:
    """Top-left positions of crops of side `crop` spaced <= `stride` covering [0, extent).

    Example: crop_positions(100, 30, 15) -> [0, 14, 28, 42, 56, 70] (centres 15 ... 85).
    """
    n = math.ceil((extent - crop) / stride - 1e-9) + 1
    return [int(p) for p in np.round(np.linspace(0, extent - crop, n))]


@dataclass(frozen=True)
class LevelGrid:
    """The crops of one pyramid level on one image size."""
    crop_frac: float
    crop_px: int
    tops: tuple[int, ...]
    lefts: tuple[int, ...]

    @property
    def centres_v(self) -> np.ndarray:
        return np.asarray(self.tops, dtype=np.float64) + self.crop_px / 2

    @property
    def centres_u(self) -> np.ndarray:
        return np.asarray(self.lefts, dtype=np.float64) + self.crop_px / 2

    @property
    def cells_per_image(self) -> int:
        return len(self.tops) * len(self.lefts)


def level_grid(height: int, width: int, crop_frac: float, stride_scaler: float = 0.5) -> LevelGrid:
    """The crop grid of one level (module docstring has the rule)."""
    crop = int(min(max(1, round(crop_frac * height)), height, width))
    stride = max(1.0, crop * stride_ratio(crop_frac, stride_scaler))
    return LevelGrid(crop_frac, crop, tuple(crop_positions(height, crop, stride)),
                     tuple(crop_positions(width, crop, stride)))


def pyramid_grids(height: int, width: int, crop_fracs: Sequence[float],
                  stride_scaler: float = 0.5) -> list[LevelGrid]:
    fracs = [float(f) for f in crop_fracs]
    if not fracs or any(b <= a for a, b in zip(fracs, fracs[1:])) or fracs[0] <= 0:
        raise ValueError(f"crop_fracs must be positive and strictly increasing, got {fracs}")
    return [level_grid(height, width, f, stride_scaler) for f in fracs]


@dataclass(frozen=True)
class ClipPyramid:
    """CLIP embeddings of every crop of every level of every image.

    `features` row order is level-major: level l starts at `offsets[l]`, then image, crop row,
    crop column. It may be an fp16 memmap (lookups read only the rows they need) or, after
    `.to(device)`, a torch tensor on that device (lookups gather there).
    """
    features: np.ndarray | Tensor  # (cells, d)
    levels: tuple[LevelGrid, ...]
    n_images: int
    image_hw: tuple[int, int]
    _tables: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        counts = [self.n_images * lv.cells_per_image for lv in self.levels]
        if self.features.shape[0] != sum(counts):
            raise ValueError(f"features have {self.features.shape[0]} rows, the grid {sum(counts)}")
        # Derived index tables (a pure function of the fields above), built once.
        object.__setattr__(self, "_tables", {
            "fracs": torch.tensor(self.crop_fracs, dtype=torch.float64),
            "offsets": torch.tensor(np.cumsum([0] + counts[:-1]), dtype=torch.int64),
            "rows": torch.tensor([len(lv.tops) for lv in self.levels]),
            "cols": torch.tensor([len(lv.lefts) for lv in self.levels]),
            "cv": pad_centres([lv.centres_v for lv in self.levels]),
            "cu": pad_centres([lv.centres_u for lv in self.levels]),
        })

    @property
    def crop_fracs(self) -> list[float]:
        return [lv.crop_frac for lv in self.levels]

    @property
    def min_frac(self) -> float:
        return self.levels[0].crop_frac

    @property
    def max_frac(self) -> float:
        return self.levels[-1].crop_frac

    @property
    def embed_dim(self) -> int:
        return int(self.features.shape[1])

    def to(self, device: str | torch.device) -> "ClipPyramid":
        """A copy whose features are an fp16 tensor on `device` (e.g. the training GPU), so
        lookups gather there instead of on the CPU. Reads the whole memmap."""
        return replace(self, features=as_tensor(self.features, device))

    def lookup(
        self,
        image_idx: Int[Tensor, "r"],
        u: Float[Tensor, "r"],
        v: Float[Tensor, "r"],
        crop_frac: Float[Tensor, "r"],
    ) -> Float[Tensor, "r d"]:
        """Interpolated embedding at pixel position (u, v) of image `image_idx`, crop size
        `crop_frac` (fraction of image height). Float32 on `u`'s device, not renormalised.

        Worked example (one level, centres u = 10, 20 at the same v, values a, b):
        u = 10 -> a; u = 15 -> (a + b)/2; u = 0 -> a (clamped). Between levels 0.05 (value a)
        and 0.125 (value b) at a fixed pixel: f = 0.0875 -> (a + b)/2; f = 0.9 -> b.
        """
        t = self._tables
        r, n_lv = len(u), len(self.levels)
        img = checked_image_idx(image_idx, self.n_images)[:, None]
        # Scale: the same clamped 1-D lerp as in the image plane, over the crop fractions.
        lo, hi, w_hi = axis_lerp(t["fracs"].expand(r, -1), torch.full((r,), n_lv),
                                 crop_frac.detach().cpu().double())
        lv = torch.stack([lo, hi], 1)  # (r, 2)
        w_lv = torch.stack([1 - w_hi, w_hi], 1)
        pos_v = v.detach().cpu().double()[:, None].expand(-1, 2)
        pos_u = u.detach().cpu().double()[:, None].expand(-1, 2)
        i0, i1, wv = axis_lerp(t["cv"][lv], t["rows"][lv], pos_v)
        j0, j1, wu = axis_lerp(t["cu"][lv], t["cols"][lv], pos_u)
        rows, cols = t["rows"][lv], t["cols"][lv]
        base = t["offsets"][lv] + img * rows * cols  # first row of (level, image)
        ii = torch.stack([i0, i1], -1)[..., :, None]  # (r, 2, 2, 1)
        jj = torch.stack([j0, j1], -1)[..., None, :]  # (r, 2, 1, 2)
        idx = base[..., None, None] + ii * cols[..., None, None] + jj  # (r, 2, 2, 2)
        w = (w_lv[..., None, None] * torch.stack([1 - wv, wv], -1)[..., :, None]
             * torch.stack([1 - wu, wu], -1)[..., None, :])
        out = weighted_sum(self.features, idx.reshape(r, 8), w.reshape(r, 8))
        return out.to(u.device)


def checked_image_idx(image_idx: Int[Tensor, "r"], n_images: int) -> Int[Tensor, "r"]:
    """Image indices on the CPU, refusing out-of-range ones (they would silently read another
    image's or level's rows from the flat table)."""
    img = image_idx.detach().cpu().long()
    if len(img) and (int(img.min()) < 0 or int(img.max()) >= n_images):
        raise IndexError(f"image index out of range [0, {n_images}): {img.min()}..{img.max()}")
    return img


def as_tensor(features: np.ndarray | Tensor, device: str | torch.device) -> Tensor:
    if isinstance(features, Tensor):
        return features.to(device)
    return torch.from_numpy(np.array(features)).to(device)  # np.array: copy out of a memmap


def as_float_chw(image: Float[Tensor, "h w 3"] | UInt8[Tensor, "h w 3"]) -> Float[Tensor, "3 h w"]:
    """One image as float [0, 1] channels-first (uint8 images are divided by 255)."""
    x = image.permute(2, 0, 1)
    return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()


def iter_crop_batches(
    images: Images, ids: Optional[Int[Tensor, "n h w"]], levels: Sequence[LevelGrid],
    input_px: int, batch_size: int, px_m: Optional[Float[Tensor, "n h w"]] = None,
) -> Iterator[tuple[Float[Tensor, "b 3 s s"], Optional[Int[Tensor, "b s s"]], Optional[Float[Tensor, "b s s"]]]]:
    """Crops resized to `input_px`, in the pyramid's row order, `batch_size` at a time: RGB, ids
    (if given) and, if `px_m` (metres per pixel, camera-z depth / focal) is given, `crop_m`: the
    crop's side in metres at each pixel's depth (crop side in pixels x px_m)."""
    bufs: list[list[Tensor]] = [[], [], []]
    for lv in levels:
        c = lv.crop_px
        for n in range(images.shape[0]):
            image = as_float_chw(images[n])
            for top in lv.tops:  # one row of crops at a time: one resize call per row
                bufs[0].append(resize_square(
                    torch.stack([image[:, top:top + c, x:x + c] for x in lv.lefts]), input_px))
                if ids is not None:
                    bufs[1].append(resize_ids(
                        torch.stack([ids[n, top:top + c, x:x + c] for x in lv.lefts]), (input_px, input_px)))
                if px_m is not None:
                    bufs[2].append(resize_nearest(
                        c * torch.stack([px_m[n, top:top + c, x:x + c] for x in lv.lefts]), (input_px, input_px)))
                if sum(map(len, bufs[0])) >= batch_size:
                    yield from _full_batches(bufs, batch_size, final=False)
    yield from _full_batches(bufs, batch_size, final=True)


def _full_batches(bufs: list[list[Tensor]], batch_size: int, final: bool):
    """Yield whole batches from the buffers (RGB, then optional ones), leaving the remainder in
    them (all of it if final)."""
    if not bufs[0]:
        return
    stacks = [torch.cat(b) if b else None for b in bufs]
    total = len(stacks[0])
    n_out = total if final else total // batch_size * batch_size
    for start in range(0, n_out, batch_size):
        yield tuple(None if x is None else x[start:min(start + batch_size, n_out)] for x in stacks)
    for b, x in zip(bufs, stacks):
        b[:] = [x[n_out:]] if x is not None and n_out < total else []


@dataclass(frozen=True, eq=False)  # eq=False: == of tensors is elementwise, not a bool
class PyramidInputs:
    """What a CLIP pyramid's numbers are computed from, hence its cache's identity
    (`lerf.encoders.cache.clip_cache_key`): the images, what the encoder reads beside the pixels,
    the encoder, and the crop grid. How it is computed or kept (batch size, progress bar, output
    array, memmap or RAM) is not part of it: those stay keyword arguments of the functions.

    `ids`: per-pixel ids the encoder may read (the demo's part ids; a real scene's object ids or
    None). `px_m`: metres per pixel (camera-z depth / focal, demo scene only), from which each
    crop's physical side reaches the encoder as `crop_m`. `crop_fracs`: crop sides as fractions
    of the image height, strictly increasing; `stride_scaler`: see `stride_ratio`.
    """
    images: Images
    ids: Optional[Int[Tensor, "n h w"]]
    encoder: ClipEncoder
    crop_fracs: Sequence[float]  # stored as a tuple
    stride_scaler: float = 0.5
    px_m: Optional[Float[Tensor, "n h w"]] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "crop_fracs", tuple(float(f) for f in self.crop_fracs))  # immutable

    def levels(self) -> tuple[LevelGrid, ...]:
        """The crop grid of every level on these images (module docstring has the rule)."""
        h, w = self.images.shape[1:3]
        return tuple(pyramid_grids(h, w, self.crop_fracs, self.stride_scaler))

    def pyramid(self, features: np.ndarray | Tensor) -> ClipPyramid:
        """These inputs' pyramid with `features` as its rows (just built, or read from a cache)."""
        n, h, w = self.images.shape[:3]
        return ClipPyramid(features, self.levels(), n, (h, w))


def build_clip_pyramid(
    inputs: PyramidInputs,
    batch_size: int = 64,
    out: Optional[np.ndarray] = None,
    progress: bool = True,
) -> ClipPyramid:
    """Embed every crop of every level (see module docstring) with `inputs.encoder`, batched.

    `out`: an optional preallocated (cells, d) array (e.g. a memmap of the cache file being
    written) to fill instead of allocating one in RAM.
    """
    encoder, levels = inputs.encoder, inputs.levels()
    total = inputs.images.shape[0] * sum(lv.cells_per_image for lv in levels)
    if out is None:
        out = np.empty((total, encoder.embed_dim), dtype=STORE_DTYPE)
    if out.shape != (total, encoder.embed_dim):
        raise ValueError(f"out has shape {out.shape}, expected {(total, encoder.embed_dim)}")
    done = 0
    batches = iter_crop_batches(inputs.images, inputs.ids, levels, encoder.input_px, batch_size, inputs.px_m)
    with tqdm(total=total, desc=f"CLIP pyramid ({encoder.name})", unit="crop", disable=not progress) as bar:
        for rgb, crop_ids, crop_m in batches:
            emb = encoder.encode_crops(rgb, crop_ids) if crop_m is None else encoder.encode_crops(rgb, crop_ids, crop_m)
            out[done:done + len(rgb)] = emb.detach().cpu().numpy().astype(out.dtype)
            done += len(rgb)
            bar.update(len(rgb))
    assert done == total, (done, total)
    return inputs.pyramid(out)


@dataclass(frozen=True)
class DinoMaps:
    """Dense features per image at the encoder's grid, `features` (n, gh, gw, d): a numpy array
    (maybe a memmap) or, after `.to(device)`, a torch tensor on that device."""
    features: np.ndarray | Tensor
    image_hw: tuple[int, int]

    @property
    def feature_dim(self) -> int:
        return int(self.features.shape[-1])

    def to(self, device: str | torch.device) -> "DinoMaps":
        """A copy whose features are an fp16 tensor on `device` (see ClipPyramid.to)."""
        return replace(self, features=as_tensor(self.features, device))

    @property
    def stride_px(self) -> tuple[float, float]:
        """Cell size in image pixels, (along v, along u)."""
        return self.image_hw[0] / self.features.shape[1], self.image_hw[1] / self.features.shape[2]

    def lookup(self, image_idx: Int[Tensor, "r"], u: Float[Tensor, "r"], v: Float[Tensor, "r"]
               ) -> Float[Tensor, "r d"]:
        """Bilinear between cell centres (clamped at the borders), float32 on `u`'s device.

        Example: stride 4 px -> cell centres at u = 2, 6, 10, ...; u = 4 is the mean of the
        first two cells' features, u = 1 is the first cell's.
        """
        n, gh, gw, d = self.features.shape
        sv, su = self.stride_px
        i0, i1, wv = uniform_axis_lerp(v.detach().cpu().double(), sv, gh)
        j0, j1, wu = uniform_axis_lerp(u.detach().cpu().double(), su, gw)
        img = checked_image_idx(image_idx, n)
        ii, jj = torch.stack([i0, i1], -1), torch.stack([j0, j1], -1)
        idx = ((img[:, None, None] * gh + ii[:, :, None]) * gw + jj[:, None, :]).reshape(-1, 4)
        w = (torch.stack([1 - wv, wv], -1)[:, :, None] * torch.stack([1 - wu, wu], -1)[:, None, :])
        out = weighted_sum(self.features.reshape(-1, d), idx, w.reshape(-1, 4))
        return out.to(u.device)


def build_dino_maps(
    images: Images,
    ids: Optional[Int[Tensor, "n h w"]],
    encoder: DenseEncoder,
    out: Optional[np.ndarray] = None,
    progress: bool = True,
) -> DinoMaps:
    """Dense features of every image, one image per forward pass (whole-image attention)."""
    n, h, w = images.shape[:3]
    gh, gw = encoder.grid_hw(h, w)
    shape = (n, gh, gw, encoder.feature_dim)
    if out is None:
        out = np.empty(shape, dtype=STORE_DTYPE)
    if out.shape != shape:
        raise ValueError(f"out has shape {out.shape}, expected {shape}")
    for k in tqdm(range(n), desc=f"Dense features ({encoder.name})", unit="image", disable=not progress):
        feats = encoder.encode_dense(as_float_chw(images[k])[None], None if ids is None else ids[k:k + 1])
        out[k] = feats[0].detach().cpu().numpy().astype(out.dtype)
    return DinoMaps(out, (h, w))
