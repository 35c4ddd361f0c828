"""What a training run will take, said before it starts: disk for the feature caches, host RAM,
and (on CUDA) GPU memory; a one-line refusal when the disk or the RAM is not there.

Sizes are exact where the code decides them and estimates where the allocator does:
* caches: the CLIP pyramid is one fp16 row of `clip_dim` per crop of every level of every image
  (`lerf.encoders.cache.clip_pyramid_shape`), the DINO cache one fp16 vector per cell of the
  encoder's grid (`dino_maps_shape`); a cache whose sidecar already matches costs no disk.
* host RAM: the images (uint8), the encoders' weights, each cache up to
  `lerf.encoders.cache.RAM_THRESHOLD_BYTES` (larger ones are memory-mapped, so the page cache holds
  what lookups touch) and, when training on the CPU, the model's weights, gradients and Adam's two
  moments (20 bytes per parameter, `TRAIN_STATE_BYTES_PER_PARAM`) and one batch's activations.
* GPU memory (an estimate): the caches and encoders moved to the device, 20 bytes per parameter,
  and the activations one batch keeps for the backward pass (`activation_bytes`), plus the CUDA
  context. Not measured on a GPU here; the README's table says what was.

Example (hand-computable, tests/test_run_cost.py): 2 images of 48 x 64, one crop level at 100 %
of the height (2 crops per image), 512-d CLIP, a 6 x 8 DINO grid of 384-d -> pyramid
4 x 512 x 2 + 128 = 4224 bytes, DINO 2 x 6 x 8 x 384 x 2 + 128 = 73856 bytes.
"""
from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch

from lerf.config import GridConfig, ModelConfig, TrainConfig
from lerf.data.scene import SceneData
from lerf.encoders.cache import (RAM_THRESHOLD_BYTES, clip_cache_current, clip_pyramid_shape, dino_cache_current,
                                 dino_maps_shape, npy_bytes, open_cache_dir)
from lerf.encoders.factory import dino_ids_for
from lerf.train.supervision import Encoders, clip_pyramid_inputs, feature_cache_dir

log = logging.getLogger(__name__)

# fp32 weight + gradient + Adam's exp_avg and exp_avg_sq, + 4: the torch hash grid's backward builds
# each table's gradient before adding it into .grad (nerfacto's second backward on the CPU peaked
# 1.2 GB above its first, about 4 bytes x its 282 M parameters; bench_run_cost.py --phase activations).
TRAIN_STATE_BYTES_PER_PARAM = 20
CUDA_CONTEXT_BYTES = 600 * 2**20  # what torch's CUDA context and kernels take before any tensor (typical)


class ResourceError(RuntimeError):
    """The machine lacks the disk or RAM a run needs; raised before anything is written."""

    user_error = True  # lerf.apps.cli prints it as one line


@dataclass(frozen=True)
class RunCost:
    clip_cache_bytes: int
    dino_cache_bytes: int
    disk_to_write_bytes: int  # caches not yet on disk (a matching cache costs nothing)
    image_bytes: int
    encoder_bytes: int
    cache_ram_bytes: int  # caches read into RAM (the memory-mapped ones count 0)
    train_state_ram_bytes: int  # CPU training only: weights, gradients, Adam moments, one batch's activations
    model_params: int
    gpu_bytes: Optional[int] = None  # CUDA only

    @property
    def ram_bytes(self) -> int:
        return self.image_bytes + self.encoder_bytes + self.cache_ram_bytes + self.train_state_ram_bytes

    @property
    def ram_to_come_bytes(self) -> int:
        """What the run will still allocate once images and encoders are loaded (when it is checked)."""
        return self.cache_ram_bytes + self.train_state_ram_bytes


def cache_bytes(n_images: int, height: int, width: int, crop_fracs: Sequence[float], stride_scaler: float,
                clip_dim: int, dino_shape: Optional[Sequence[int]]) -> tuple[int, int]:
    """Disk bytes of the CLIP pyramid and the DINO cache (0 without DINO) of `n_images` images."""
    clip = npy_bytes(clip_pyramid_shape(n_images, height, width, crop_fracs, stride_scaler, clip_dim))
    return clip, npy_bytes(dino_shape) if dino_shape is not None else 0


def ram_resident(nbytes: int) -> int:
    """The RAM a cache of this size takes once loaded: all of it up to the memory-map threshold."""
    return nbytes if nbytes <= RAM_THRESHOLD_BYTES else 0


def grid_sample_bytes(grid: GridConfig) -> int:
    """Bytes the torch hash grid keeps per sample for the backward pass: per level, 8 corners of
    an int64 index, a fp32 weight and the gathered fp32 features. An upper bound for the fused
    (Triton, tcnn) backends, which keep less."""
    return grid.num_levels * 8 * (8 + 4 + 4 * grid.features_per_level)


def activation_bytes(model: ModelConfig, rays: int, clip_dim: int, dino_dim: int) -> int:
    """Rough activations of one training batch: what the samples' grid lookups and MLP layers keep
    for the backward pass. Proposal networks at their sample counts, the NeRF field at
    nerf_samples, the language field at samples_per_ray of its rays. Measured per ray on the CPU
    (torch backend, growth of peak RSS from 192 to 320 rays; bench_run_cost.py --phase
    activations): nerfacto 1.29 MB (this formula: 1.15 MB), lite 0.37 MB (0.59 MB)."""
    props = sum(n * (grid_sample_bytes(p.grid) + 4 * 2 * p.hidden_dim)
                for n, p in zip(model.proposal_samples, model.proposals))
    nerf = model.nerf_samples * (grid_sample_bytes(model.grid) + 4 * 2 * (model.hidden_dim + 3 * model.color_hidden_dim))
    lang = model.language
    lang_rays = min(rays, lang.rays_per_batch) if lang.rays_per_batch else rays
    lang_per_sample = (sum(grid_sample_bytes(g) for g in lang.grids) + 4 * 2 * lang.hidden_dim
                       * (lang.clip_layers + lang.dino_layers) + 4 * (clip_dim + dino_dim)) if lang.enabled else 0
    return rays * (props + nerf) + lang_rays * lang.samples_per_ray * lang_per_sample


def estimate_run_cost(n_images: int, height: int, width: int, crop_fracs: Sequence[float], stride_scaler: float,
                      clip_dim: int, dino_shape: Optional[Sequence[int]], encoder_bytes: int, model_params: int,
                      model: ModelConfig, rays_per_batch: int, device_type: str,
                      cached: tuple[bool, bool] = (False, False)) -> RunCost:
    """Every figure of `RunCost` from the run's sizes; `cached`: whether the CLIP / DINO cache on
    disk already matches (then it costs no disk)."""
    clip, dino = cache_bytes(n_images, height, width, crop_fracs, stride_scaler, clip_dim, dino_shape)
    dino_dim = int(dino_shape[-1]) if dino_shape is not None else 0
    state = model_params * TRAIN_STATE_BYTES_PER_PARAM + activation_bytes(model, rays_per_batch, clip_dim, dino_dim)
    gpu = CUDA_CONTEXT_BYTES + clip + dino + encoder_bytes + state if device_type == "cuda" else None
    return RunCost(
        clip_cache_bytes=clip, dino_cache_bytes=dino,
        disk_to_write_bytes=(0 if cached[0] else clip) + (0 if cached[1] else dino),
        image_bytes=n_images * height * width * 3, encoder_bytes=encoder_bytes,
        cache_ram_bytes=ram_resident(clip) + ram_resident(dino),
        train_state_ram_bytes=state if device_type == "cpu" else 0, model_params=model_params, gpu_bytes=gpu)


def free_disk_bytes(folder: str | Path) -> int:
    """Free bytes on the file system that holds `folder` (or its nearest existing parent)."""
    path = Path(folder).expanduser().resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def available_ram_bytes() -> int:
    """RAM the kernel can give without swapping: /proc/meminfo's MemAvailable (Linux), else the
    free physical pages (os.sysconf)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def gb(n_bytes: int | float) -> str:
    """A size for the log: MB below 1 GB, GB above (decimal units, as `df -H`). 49280 -> '0.05 MB'."""
    return f"{n_bytes / 1e6:.2f} MB" if n_bytes < 1e9 else f"{n_bytes / 1e9:.2f} GB"


def describe(cost: RunCost, n_images: int, cache_dir: Path) -> list[str]:
    """The log lines that say what the run will take."""
    lines = [f"feature caches for {n_images} images in {cache_dir}: CLIP pyramid {gb(cost.clip_cache_bytes)}, "
             f"DINO {gb(cost.dino_cache_bytes)} ({gb(cost.disk_to_write_bytes)} still to write)",
             f"host RAM: {gb(cost.ram_bytes)} (images {gb(cost.image_bytes)}, encoders {gb(cost.encoder_bytes)}, "
             f"caches in RAM {gb(cost.cache_ram_bytes)}, CPU training state {gb(cost.train_state_ram_bytes)}); "
             f"model {cost.model_params / 1e6:.1f} M parameters"]
    if cost.gpu_bytes is not None:
        lines.append(f"GPU memory: about {gb(cost.gpu_bytes)} (an estimate from parameter counts, cache sizes and "
                     "the batch; not a measurement)")
    return lines


def check_resources(cost: RunCost, cache_dir: str | Path, free_disk: Optional[int] = None,
                    free_ram: Optional[int] = None) -> None:
    """Refuse (ResourceError, one line) when the caches do not fit on the cache's disk or the run's
    remaining allocations do not fit in the available RAM. `free_disk` / `free_ram` default to
    what the system reports (tests pass their own)."""
    free_disk = free_disk_bytes(cache_dir) if free_disk is None else free_disk
    if cost.disk_to_write_bytes > free_disk:
        raise ResourceError(
            f"not enough disk for the feature caches: {cache_dir} has {gb(free_disk)} free, the CLIP pyramid and "
            f"DINO maps need {gb(cost.disk_to_write_bytes)}. Free some space or set encoder.cache_dir to a larger "
            "disk (fewer crops: encoder.pyramid_levels / pyramid_min_frac; smaller images: scene.downscale). "
            "Nothing was written")
    free_ram = available_ram_bytes() if free_ram is None else free_ram
    if cost.ram_to_come_bytes > free_ram:
        raise ResourceError(
            f"not enough RAM: the run still needs {gb(cost.ram_to_come_bytes)} (caches {gb(cost.cache_ram_bytes)}, "
            f"CPU training state {gb(cost.train_state_ram_bytes)}) and {gb(free_ram)} is available. Close other "
            "programs, train on a GPU, or shrink the model (model=lite) or the images (scene.downscale). "
            "Nothing was written")


def module_bytes(*modules: Optional[torch.nn.Module]) -> int:
    """Bytes of the parameters and buffers of some modules (None skipped)."""
    return sum(t.numel() * t.element_size() for m in modules if m is not None
               for t in list(m.parameters()) + list(m.buffers()))


def encoder_bytes(*encoders) -> int:
    """Bytes of the torch modules an encoder object holds (OpenCLIP's model, DINO's net...)."""
    return module_bytes(*(v for enc in encoders if enc is not None for v in vars(enc).values()
                          if isinstance(v, torch.nn.Module)))


def run_cost(cfg: TrainConfig, scene: SceneData, encoders: Encoders, model: torch.nn.Module,
             device: torch.device) -> RunCost:
    """The run's cost from its config, its loaded scene, its built encoders and model."""
    n, h, w = scene.images.shape[:3]
    cache_dir = feature_cache_dir(cfg, scene)
    clip_pyramid = clip_pyramid_inputs(cfg, scene, encoders.clip)
    fracs, stride = clip_pyramid.crop_fracs, clip_pyramid.stride_scaler
    dino = encoders.dino
    cached = (clip_cache_current(cache_dir, clip_pyramid),
              dino is None or dino_cache_current(cache_dir, scene.images, dino_ids_for(cfg, scene), dino))
    return estimate_run_cost(
        n, h, w, fracs, stride, encoders.clip.embed_dim, dino_maps_shape(n, h, w, dino) if dino else None,
        encoder_bytes(encoders.clip, dino), sum(p.numel() for p in model.parameters()), cfg.model,
        cfg.trainer.rays_per_batch, device.type, cached)


def announce_run_cost(cfg: TrainConfig, scene: SceneData, encoders: Encoders, model: torch.nn.Module,
                      device: torch.device) -> RunCost:
    """Log what the run will take and refuse (ResourceError) if the disk or RAM is not there;
    called before the first cache or run file is written. A killed build's temporaries are
    removed first, so that the free space counts the room they held."""
    cache_dir = open_cache_dir(feature_cache_dir(cfg, scene))
    cost = run_cost(cfg, scene, encoders, model, device)
    for line in describe(cost, scene.images.shape[0], cache_dir):
        log.info("%s", line)
    check_resources(cost, cache_dir)
    return cost


def bare_model(cfg: TrainConfig, clip_dim: int, dino_dim: int, frames: int = 8):
    """The configured model over a nominal scene of `frames` training views and no data (torch
    hash grid): what benchmarks/bench_run_cost.py runs to measure a batch's activations."""
    from lerf.model import LerfModel, SceneGeometry

    geometry = SceneGeometry.from_scene(cfg.scene, 1.0, None, frames, list(range(frames)))
    return LerfModel(cfg.model, geometry, "torch", clip_dim, dino_dim)

