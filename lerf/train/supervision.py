"""Language supervision: the cached CLIP pyramid and DINO maps, and the losses against them."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from lerf.config import TrainConfig
from lerf.data.scene import SceneData
from lerf.data.units import crop_size_m, metres_per_pixel, ray_t_to_depth_m
from lerf.encoders.cache import load_or_build_clip_pyramid, load_or_build_dino_maps, scene_cache_dir
from lerf.encoders.factory import clip_encoder_for, dino_encoder_for, dino_ids_for, pyramid_crop_fracs
from lerf.fields.language_field import SCALE_MODES
from lerf.model import LerfModel
from lerf.train.rays import spread_indices

log = logging.getLogger(__name__)


@dataclass
class LanguageSupervision:
    text_encoder: Any  # the CLIP encoder, for prompts (encode_text)
    clip_pyramid: Any  # lerf.encoders.pyramid.ClipPyramid: lookups, crop fractions
    dino_maps: Optional[Any]  # lerf.encoders.pyramid.DinoMaps
    image_height: int
    fy_px: Float[Tensor, " n"]

    @property
    def clip_dim(self) -> int:
        return self.text_encoder.embed_dim

    @property
    def dino_dim(self) -> int:
        return self.dino_maps.feature_dim if self.dino_maps is not None else 0


def _on_device(features, device: torch.device):
    # On an accelerator the whole table moves there so lookups gather on-device; on the CPU it
    # stays memory-mapped (read lazily).
    return features if device.type == "cpu" else features.to(device)


@dataclass
class Encoders:
    """The run's image encoders: CLIP (also the text encoder of prompts) and DINO (None when off)."""

    clip: Any
    dino: Optional[Any]


def build_encoders(cfg: TrainConfig, scene: SceneData, device: torch.device) -> Encoders:
    dino = dino_encoder_for(cfg, scene, device) if cfg.model.language.dino_enabled else None
    return Encoders(clip_encoder_for(cfg, scene, device), dino)


def clip_inputs(cfg: TrainConfig, scene: SceneData) -> tuple[Optional[Tensor], Optional[Tensor]]:
    """The id masks and metres-per-pixel maps the CLIP encoder reads: the demo instrument reads
    parts and physical crop sizes; real encoders read neither (a real scene has no ids)."""
    if cfg.encoder.clip == "reference":
        return scene.part_ids, metres_per_pixel(scene.depth_z_m, scene.cameras.fy_px)
    return scene.object_ids, None


def feature_cache_dir(cfg: TrainConfig, scene: SceneData) -> Path:
    return scene_cache_dir(cfg.encoder.cache_dir, scene.root)


def build_supervision(cfg: TrainConfig, scene: SceneData, device: torch.device,
                      encoders: Optional[Encoders] = None) -> LanguageSupervision:
    """Load (or compute once and cache) the CLIP pyramid and DINO maps of the training images."""
    encoders = encoders or build_encoders(cfg, scene, device)
    images = scene.images  # uint8: a quarter of the memory of floats
    cache_dir = feature_cache_dir(cfg, scene)
    clip_ids, px_m = clip_inputs(cfg, scene)
    pyramid = load_or_build_clip_pyramid(cache_dir, images, clip_ids, encoders.clip, pyramid_crop_fracs(cfg),
                                         batch_size=cfg.encoder.batch_size,
                                         stride_scaler=cfg.encoder.pyramid_stride_scaler, px_m=px_m)
    pyramid = _on_device(pyramid, device)
    dino_maps = None
    if encoders.dino is not None:
        dino_maps = _on_device(load_or_build_dino_maps(cache_dir, images, dino_ids_for(cfg, scene), encoders.dino),
                               device)
    return LanguageSupervision(encoders.clip, pyramid, dino_maps, scene.height, scene.cameras.fy_px.to(device))


CROP_SAMPLINGS = ("uniform", "log_uniform")


def sample_crop_fracs(n: int, sup: LanguageSupervision, generator: torch.Generator,
                      sampling: str = "uniform") -> Float[Tensor, " n"]:
    """Each training ray describes a crop of random size within the pyramid (LERF §3.1):
    uniform in crop fraction (LERF) or in its logarithm (`model.language.crop_sampling`).

    Example: pyramid 0.05-0.5, log_uniform: u = 0.5 gives sqrt(0.05 * 0.5) = 0.158."""
    lo, hi = sup.clip_pyramid.min_frac, sup.clip_pyramid.max_frac
    u = torch.rand(n, generator=generator)
    if sampling == "uniform":
        return lo + (hi - lo) * u
    if sampling == "log_uniform":
        return lo * (hi / lo) ** u
    raise ValueError(f"model.language.crop_sampling must be one of {CROP_SAMPLINGS}, got '{sampling}'")


def clip_loss(pred: Float[Tensor, "r d"], target: Float[Tensor, "r d"], kind: str, delta: float) -> Tensor:
    """Huber (LERF's choice, δ = 1.25, summed over channels) or cosine distance, mean over rays."""
    if kind == "huber":
        return F.huber_loss(pred, target, delta=delta, reduction="none").sum(-1).mean()
    if kind == "cosine":
        return (1 - F.cosine_similarity(pred, target, dim=-1)).mean()
    raise ValueError(f"model.language.clip_loss must be huber or cosine, got '{kind}'")


def training_scales(mode: str, crop_px_over_f: Float[Tensor, " r"], t_samples: Float[Tensor, "r k"],
                    t_ray: Float[Tensor, " r"], z_per_t: Float[Tensor, " r"], scale_factor: float,
                    nominal_depth_m: float = 1.0) -> Float[Tensor, "r k"]:
    """The physical scale each language sample of a training ray is supervised at.

    "depth" (LERF §3.1): the crop's frustum at each sample's own z-depth, crop_px / f · z_k
    metres. Example: a 32 px crop, f = 160 px, samples at z = 1 m and 2 m -> 0.2 m and 0.4 m.
    "ray_depth" uses the ray's expected depth for all its samples; "no_depth" takes every pixel
    to be at `nominal_depth_m` (the crop's angular size in disguise); "none" 0 (the head ignores it).
    """
    k = t_samples.shape[1]
    if mode == "depth":
        return crop_size_m(crop_px_over_f[:, None], ray_t_to_depth_m(t_samples, z_per_t[:, None], scale_factor))
    if mode == "ray_depth":
        return crop_size_m(crop_px_over_f, ray_t_to_depth_m(t_ray, z_per_t, scale_factor))[:, None].expand(-1, k)
    if mode == "no_depth":
        return crop_size_m(crop_px_over_f, torch.full_like(crop_px_over_f, nominal_depth_m))[:, None].expand(-1, k)
    if mode == "none":
        return torch.zeros_like(t_samples)
    raise ValueError(f"model.language.scale_mode must be one of {SCALE_MODES}, got '{mode}'")


def language_losses(model: LerfModel, out: dict[str, Tensor], batch, sup: LanguageSupervision,
                    generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
    lcfg = model.cfg.language
    device = batch.u.device
    pos, w, t = model.language_samples(out, lcfg.samples_per_ray)
    depth = out["depth"].detach()
    if 0 < lcfg.rays_per_batch < batch.u.shape[0]:  # a subset of the batch, evenly spread
        idx = spread_indices(batch.u.shape[0], lcfg.rays_per_batch).to(device)
        batch, pos, w, t, depth = batch.subset(idx), pos[idx], w[idx], t[idx], depth[idx]
    fracs = sample_crop_fracs(batch.u.shape[0], sup, generator, lcfg.crop_sampling).to(device)
    crop_px_over_f = fracs * sup.image_height / sup.fy_px[batch.image_idx]
    scale_m = training_scales(lcfg.scale_mode, crop_px_over_f, t, depth, batch.z_per_t,
                              model.geometry.scale_factor, lcfg.nominal_depth_m)
    pred = model.render_language(pos, w, scale_m)
    target = sup.clip_pyramid.lookup(batch.image_idx, batch.u, batch.v, fracs).to(device)
    loss_clip = clip_loss(pred["clip"], target, lcfg.clip_loss, lcfg.huber_delta)
    total = lcfg.clip_weight * loss_clip
    # The physical scales this batch was supervised at (5th/95th percentile): the checkpoint keeps
    # their range so a query can warn when it searches scales training never saw.
    lo, hi = torch.quantile(scale_m.detach().reshape(-1).float().cpu(), torch.tensor([0.05, 0.95])).tolist()
    logs = {"loss/clip": loss_clip.item(), "scale_m/p05": lo, "scale_m/p95": hi}
    if "dino" in pred and sup.dino_maps is not None:
        dino_target = sup.dino_maps.lookup(batch.image_idx, batch.u, batch.v).to(device)
        loss_dino = ((pred["dino"] - dino_target) ** 2).sum(-1).mean()
        total = total + lcfg.dino_weight * loss_dino
        logs["loss/dino"] = loss_dino.item()
    return total, logs
