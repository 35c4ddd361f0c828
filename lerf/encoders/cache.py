"""Disk cache of the CLIP pyramid and the DINO maps: fp16 `.npy` + a JSON sidecar holding the key.

Layout, in a per-scene `cache_dir` (`scene_cache_dir`: the scene folder's name + a hash of its path):
    clip_pyramid_<encoder.name>_<grid>.npy   (cells, d) float16, rows level-major (see pyramid.py)
    clip_pyramid_<encoder.name>_<grid>.json  {"key": {...}, "shape", "dtype", "levels": [...], "build_s"}
    dino_maps_<encoder.name>.npy      (n, gh, gw, d) float16
    dino_maps_<encoder.name>.json     {"key": {...}, "shape", "dtype", "stride_px", "build_s"}

The key is everything that determines the numbers: the encoder's `cache_key()` (model, weights
hash, input size...), the images (count, size, dtype and a BLAKE2 digest of their bytes and of the
id masks), the crop fractions and stride rule, and `FORMAT_VERSION`. A cache is used only if its
sidecar's key equals the current one and the data file has the recorded shape; otherwise it is
rebuilt and the log says which key fields differ.

<grid> is a digest of the crop fractions and stride rule (`clip_cache_stem`): pyramids of other
crop grids (a sweep's single-scale row, another level count) are other files, so a sweep never
rebuilds the default pyramid after a variant, nor do parallel jobs of different grids replace each
other's file — with OpenCLIP a pyramid takes minutes to hours to build. A cache written under the
name without <grid> (before 2026-12-03) is renamed to the new name when its key matches.

Crash safety: the old sidecar is deleted first, the data is written to a temp file and
`os.replace`d into place, and the sidecar is written last (also temp + replace). A sidecar thus
exists only beside complete data; a crash leaves at worst an orphan temp file or a data file
with no sidecar, both of which are rebuilt. Orphan temp files (`.<stem>.tmp-<pid>.npy`, as big as
the cache) are removed the next time a cache in that folder is opened, once their process is
gone (`lerf.data.atomic.remove_stale_temporaries`).

Loading is lazy: `np.load(mmap_mode="r")`; lookups read only the rows they gather. Caches up to
`RAM_THRESHOLD_BYTES` are read into RAM instead (`in_memory=None`), because random gathers from
a memmap cost page faults on first touch; `in_memory=True/False` forces either.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
from jaxtyping import Float, Int
from torch import Tensor

from lerf.data.atomic import remove_stale_temporaries, replace_atomically, write_json
from lerf.encoders.base import DenseEncoder
from lerf.encoders.pyramid import (STORE_DTYPE, ClipPyramid, DinoMaps, Images, LevelGrid, PyramidInputs,
                                   build_clip_pyramid, build_dino_maps, pyramid_grids)

log = logging.getLogger(__name__)

FORMAT_VERSION = 1  # bump when the file layout or the crop-grid rule changes
RAM_THRESHOLD_BYTES = 2 << 30


def images_digest(images: Images, ids: Optional[Int[Tensor, "n h w"]],
                  px_m: Optional[Float[Tensor, "n h w"]] = None) -> str:
    """BLAKE2b-128 of the image bytes (and id masks, and metres-per-pixel maps), one image at a
    time (no full copy).

    Hashes what the encoders see; the same pictures as uint8 and as float give different digests.
    """
    h = hashlib.blake2b(digest_size=16)
    for stack in (images, ids) + ((px_m,) if px_m is not None else ()):
        if stack is None:
            h.update(b"none")
            continue
        h.update(f"{tuple(stack.shape)}{stack.dtype}".encode())
        for k in range(stack.shape[0]):
            h.update(np.ascontiguousarray(stack[k].detach().cpu().numpy()))
    return h.hexdigest()


def images_key(images: Images, ids: Optional[Int[Tensor, "n h w"]],
               px_m: Optional[Float[Tensor, "n h w"]] = None) -> dict:
    n, h, w = images.shape[:3]
    return {"count": int(n), "height": int(h), "width": int(w), "dtype": str(images.dtype),
            "has_ids": ids is not None, "digest": images_digest(images, ids, px_m)}


def clip_cache_key(inputs: PyramidInputs) -> dict:
    """Everything that determines the pyramid's numbers (module docstring). Caches on disk hold
    this dict: changing what goes in (or how) invalidates every user's pyramid."""
    return _jsonable({"format_version": FORMAT_VERSION, "kind": "clip_pyramid",
                      "encoder": inputs.encoder.cache_key(),
                      "images": images_key(inputs.images, inputs.ids, inputs.px_m),
                      "crop_fracs": [float(f) for f in inputs.crop_fracs],
                      "stride_scaler": float(inputs.stride_scaler)})


def dino_cache_key(images: Images, ids: Optional[Int[Tensor, "n h w"]], encoder: DenseEncoder) -> dict:
    return _jsonable({"format_version": FORMAT_VERSION, "kind": "dino_maps",
                      "encoder": encoder.cache_key(), "images": images_key(images, ids)})


def _jsonable(obj: Any) -> Any:
    """The object as it will read back from JSON (tuples -> lists...), so keys compare equal."""
    return json.loads(json.dumps(obj, sort_keys=True))


def key_differences(old: Any, new: Any, path: str = "key") -> list[str]:
    """Human-readable list of where two keys differ, e.g. ["key.crop_fracs: [0.1] -> [0.2]"]."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new)):
            out += key_differences(old.get(k, "<absent>"), new.get(k, "<absent>"), f"{path}.{k}")
        return out
    return [] if old == new else [f"{path}: {old!r} -> {new!r}"]


def scene_cache_dir(cache_root: str | Path, scene_root: str | Path) -> Path:
    """<cache_root>/<scene folder name>-<hash of its resolved path>: two scenes in folders of the
    same name never share (and rebuild) one cache, and the current directory does not matter.

    Example: /data/a/teatime and /data/b/teatime -> teatime-1f3c9a2b, teatime-8d0e4c71."""
    resolved = Path(scene_root).expanduser().resolve()
    digest = hashlib.blake2b(str(resolved).encode(), digest_size=4).hexdigest()
    return Path(cache_root).expanduser().resolve() / f"{resolved.name}-{digest}"


def cache_paths(cache_dir: str | Path, stem: str) -> tuple[Path, Path]:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem)
    return Path(cache_dir) / f"{stem}.npy", Path(cache_dir) / f"{stem}.json"


def clip_cache_stem(encoder_name: str, crop_fracs: Sequence[float], stride_scaler: float) -> str:
    """File stem of a CLIP pyramid: encoder name + an 8-hex digest of its crop grid.

    Example: ("reference_clip_128", [0.05, 0.5], 0.5) -> "clip_pyramid_reference_clip_128_<8 hex>";
    the same encoder with crop fractions [0.25] gets another digest, hence another file.
    """
    grid = json.dumps({"crop_fracs": [float(f) for f in crop_fracs], "stride_scaler": float(stride_scaler)},
                      sort_keys=True)
    return f"clip_pyramid_{encoder_name}_{hashlib.blake2b(grid.encode(), digest_size=4).hexdigest()}"


def clip_cache_paths(cache_dir: str | Path, inputs: PyramidInputs) -> tuple[Path, Path]:
    """Data and sidecar paths of these inputs' pyramid (named by encoder and crop grid)."""
    return cache_paths(cache_dir, clip_cache_stem(inputs.encoder.name, inputs.crop_fracs, inputs.stride_scaler))


def _adopt_legacy(cache_dir: Path, encoder_name: str, data_path: Path, sidecar_path: Path, key: dict) -> None:
    """Rename a pyramid cached under the old name (no grid digest) when it holds exactly this key."""
    old_data, old_sidecar = cache_paths(cache_dir, f"clip_pyramid_{encoder_name}")
    if sidecar_path.exists() or not old_sidecar.exists() or not old_data.exists():
        return
    try:
        if json.loads(old_sidecar.read_text()).get("key") != key:
            return
    except (OSError, json.JSONDecodeError):
        return
    try:
        old_data.replace(data_path)  # data first: a sidecar never names data that is not there
        old_sidecar.replace(sidecar_path)
    except FileNotFoundError:  # a parallel job renamed it first
        return
    log.info("CLIP pyramid cache %s renamed to %s (the name now carries its crop grid)", old_data, data_path)


def sidecar_matches(sidecar_path: Path, key: dict) -> bool:
    """Whether a cache's sidecar holds exactly `key` (the data beside it is then complete); reads
    the small JSON only."""
    try:
        return json.loads(sidecar_path.read_text()).get("key") == key
    except (OSError, json.JSONDecodeError, AttributeError):
        return False


def clip_cache_current(cache_dir: str | Path, inputs: PyramidInputs) -> bool:
    """Whether `load_or_build_clip_pyramid` of these inputs would load instead of build."""
    return sidecar_matches(clip_cache_paths(cache_dir, inputs)[1], clip_cache_key(inputs))


def dino_cache_current(cache_dir: str | Path, images: Images, ids: Optional[Int[Tensor, "n h w"]],
                       encoder: DenseEncoder) -> bool:
    """Whether `load_or_build_dino_maps` with these arguments would load instead of build."""
    _, sidecar = cache_paths(cache_dir, f"dino_maps_{encoder.name}")
    return sidecar_matches(sidecar, dino_cache_key(images, ids, encoder))


def read_valid(data_path: Path, sidecar_path: Path, key: dict, in_memory: Optional[bool]
               ) -> Optional[tuple[np.ndarray, dict]]:
    """The cached array and sidecar if the cache is complete and its key matches, else None
    (logging why it is not usable)."""
    if not sidecar_path.exists():
        if data_path.exists():
            log.info("%s has no sidecar (interrupted write?): rebuilding", data_path)
        return None
    try:
        sidecar = json.loads(sidecar_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        log.warning("Sidecar %s unreadable (%s): rebuilding", sidecar_path, err)
        return None
    if sidecar.get("key") != key:
        diffs = key_differences(sidecar.get("key"), key)
        log.info("Cache %s is stale, rebuilding. Changed: %s", data_path, "; ".join(diffs))
        return None
    try:
        data = np.load(data_path, mmap_mode="r")
    except (OSError, ValueError, EOFError) as err:  # EOFError: an emptied file
        log.warning("Cache %s unreadable (%s): rebuilding", data_path, err)
        return None
    if list(data.shape) != sidecar["shape"] or str(data.dtype) != sidecar["dtype"]:
        log.warning("Cache %s has shape %s %s, sidecar says %s %s: rebuilding",
                    data_path, data.shape, data.dtype, sidecar["shape"], sidecar["dtype"])
        return None
    if in_memory or (in_memory is None and data.nbytes <= RAM_THRESHOLD_BYTES):
        data = np.array(data)  # one sequential read; lookups then never page-fault
    return data, sidecar


def reread(data_path: Path, sidecar_path: Path, key: dict, in_memory: Optional[bool]) -> np.ndarray:
    """The cache just written, opened the way a later run would open it."""
    found = read_valid(data_path, sidecar_path, key, in_memory)
    if found is None:
        raise RuntimeError(f"cache {data_path} was written but does not read back as valid")
    return found[0]


def write_atomic(data_path: Path, sidecar_path: Path, shape: tuple[int, ...],
                 fill: Callable[[np.ndarray], Any], sidecar: dict) -> None:
    """Create `data_path` with `fill(memmap)` then its sidecar, crash-safely (module docstring)."""
    data_path.parent.mkdir(parents=True, exist_ok=True)
    sidecar_path.unlink(missing_ok=True)  # invalidate first: old sidecar must not outlive old data
    start = time.perf_counter()

    def write_data(tmp: Path) -> None:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=STORE_DTYPE, shape=shape)
        fill(out)
        out.flush()

    replace_atomically(data_path, write_data, int(np.prod(shape)) * np.dtype(STORE_DTYPE).itemsize)
    sidecar = {**sidecar, "shape": list(shape), "dtype": np.dtype(STORE_DTYPE).name,
               "build_s": round(time.perf_counter() - start, 3)}
    write_json(sidecar_path, sidecar, indent=1, sort_keys=True)


def _levels_json(levels: Sequence[LevelGrid]) -> list[dict]:
    return [{"crop_frac": lv.crop_frac, "crop_px": lv.crop_px, "tops": list(lv.tops),
             "lefts": list(lv.lefts)} for lv in levels]


def clip_pyramid_shape(n_images: int, height: int, width: int, crop_fracs: Sequence[float],
                       stride_scaler: float, embed_dim: int) -> tuple[int, int]:
    """(rows, embed_dim) of a CLIP pyramid cache: one row per crop of every level of every image.

    Example: 2 images of 48 x 64, crop fraction 1.0, stride scaler 0.5 -> 2 crops per image
    (48 px squares at left 0 and 16) -> (4, 512) for a 512-d encoder."""
    return n_images * sum(lv.cells_per_image for lv in pyramid_grids(height, width, crop_fracs, stride_scaler)), \
        embed_dim


def dino_maps_shape(n_images: int, height: int, width: int, encoder: DenseEncoder) -> tuple[int, int, int, int]:
    """(images, rows, cols, feature_dim) of a DINO cache: the encoder's grid, never upsampled."""
    return (n_images, *encoder.grid_hw(height, width), encoder.feature_dim)


def npy_bytes(shape: Sequence[int]) -> int:
    """Bytes of an fp16 cache file of this shape (the .npy header is at most 128 bytes for 2-4
    dimensions)."""
    return int(np.prod(shape)) * np.dtype(STORE_DTYPE).itemsize + 128


def open_cache_dir(cache_dir: str | Path) -> Path:
    """The cache folder, cleared of temporaries left by killed builds (their processes are gone)."""
    remove_stale_temporaries(cache_dir)
    return Path(cache_dir)


def load_or_build_clip_pyramid(cache_dir: str | Path, inputs: PyramidInputs, batch_size: int = 64,
                               in_memory: Optional[bool] = None, progress: bool = True) -> ClipPyramid:
    """The cached pyramid of `inputs` if its key matches, else build it (`build_clip_pyramid`,
    calling the encoder) and cache it. `in_memory`: see the module docstring."""
    n, h, w = inputs.images.shape[:3]
    cache_dir = open_cache_dir(cache_dir)
    key = clip_cache_key(inputs)
    levels = inputs.levels()
    data_path, sidecar_path = clip_cache_paths(cache_dir, inputs)
    _adopt_legacy(cache_dir, inputs.encoder.name, data_path, sidecar_path, key)
    found = read_valid(data_path, sidecar_path, key, in_memory)
    if found is not None and found[1].get("levels") == _levels_json(levels):
        log.info("CLIP pyramid loaded from %s", data_path)
        return inputs.pyramid(found[0])
    if found is not None:
        log.info("Cache %s was built with another crop grid: rebuilding", data_path)
    shape = clip_pyramid_shape(n, h, w, inputs.crop_fracs, inputs.stride_scaler, inputs.encoder.embed_dim)
    write_atomic(data_path, sidecar_path, shape,
                 lambda out: build_clip_pyramid(inputs, batch_size, out=out, progress=progress),
                 {"key": key, "levels": _levels_json(levels)})
    return inputs.pyramid(reread(data_path, sidecar_path, key, in_memory))


def load_or_build_dino_maps(
    cache_dir: str | Path,
    images: Images,
    ids: Optional[Int[Tensor, "n h w"]],
    encoder: DenseEncoder,
    in_memory: Optional[bool] = None,
    progress: bool = True,
) -> DinoMaps:
    """The cached dense maps if their key matches, else build them and cache them."""
    n, h, w = images.shape[:3]
    cache_dir = open_cache_dir(cache_dir)
    key = dino_cache_key(images, ids, encoder)
    data_path, sidecar_path = cache_paths(cache_dir, f"dino_maps_{encoder.name}")
    found = read_valid(data_path, sidecar_path, key, in_memory)
    if found is not None:
        log.info("Dense features loaded from %s", data_path)
        return DinoMaps(found[0], (h, w))
    shape = dino_maps_shape(n, h, w, encoder)
    write_atomic(data_path, sidecar_path, shape,
                 lambda out: build_dino_maps(images, ids, encoder, out=out, progress=progress),
                 {"key": key, "stride_px": list(encoder.stride_px(h, w))})
    return DinoMaps(reread(data_path, sidecar_path, key, in_memory), (h, w))
