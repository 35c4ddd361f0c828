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
from lerf.data.scale_modes import ScaleRange, TrainingCrops, scale_unit, training_scales
from lerf.data.scene import SceneData
from lerf.data.units import metres_per_pixel
from lerf.encoders.base import ClipEncoder
from lerf.encoders.cache import load_or_build_clip_pyramid, load_or_build_dino_maps, scene_cache_dir
from lerf.encoders.factory import clip_encoder_for, dino_encoder_for, dino_ids_for, pyramid_inputs
from lerf.encoders.pyramid import PyramidInputs
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


def clip_pyramid_inputs(cfg: TrainConfig, scene: SceneData, encoder: ClipEncoder) -> PyramidInputs:
    """The run's CLIP pyramid of the scene's images. Beside the pixels, the demo instrument reads
    part ids and metres per pixel (physical crop sizes); real encoders read neither (a real scene
    has no ids)."""
    if cfg.encoder.clip == "reference":
        px_m = metres_per_pixel(scene.demo.depth_z_m, scene.cameras.fy_px)
        return pyramid_inputs(cfg, scene.images, scene.demo.part_ids, encoder, px_m)
    return pyramid_inputs(cfg, scene.images, scene.object_ids, encoder)


def feature_cache_dir(cfg: TrainConfig, scene: SceneData) -> Path:
    return scene_cache_dir(cfg.encoder.cache_dir, scene.root)


def build_supervision(cfg: TrainConfig, scene: SceneData, device: torch.device,
                      encoders: Optional[Encoders] = None) -> LanguageSupervision:
    """Load (or compute once and cache) the CLIP pyramid and DINO maps of the training images."""
    encoders = encoders or build_encoders(cfg, scene, device)
    images = scene.images  # uint8: a quarter of the memory of floats
    cache_dir = feature_cache_dir(cfg, scene)
    pyramid = load_or_build_clip_pyramid(cache_dir, clip_pyramid_inputs(cfg, scene, encoders.clip),
                                         batch_size=cfg.encoder.batch_size)
    pyramid = _on_device(pyramid, device)
    dino_maps = None
    if encoders.dino is not None:
        dino_maps = _on_device(load_or_build_dino_maps(cache_dir, images, dino_ids_for(cfg, scene), encoders.dino),
                               device)
    return LanguageSupervision(encoders.clip, pyramid, dino_maps, scene.height, scene.cameras.fy_px.to(device))


def sample_crop_fracs(n: int, sup: LanguageSupervision, generator: torch.Generator) -> Float[Tensor, " n"]:
    """Each training ray describes a crop of random size within the pyramid, uniform in crop
    fraction between its smallest and largest crop (LERF §3.1 and the authors' code).

    Example: pyramid 0.05-0.5, u = 0.5 -> 0.275."""
    lo, hi = sup.clip_pyramid.min_frac, sup.clip_pyramid.max_frac
    return lo + (hi - lo) * torch.rand(n, generator=generator)


def masked_ray_mean(per_ray: Float[Tensor, " r"], keep: Tensor) -> Tensor:
    """Mean over the rays where `keep` is true; 0 when none is (nothing to learn from).

    The authors' renderer divides a ray with no language weight by a zero norm and `nanmean`
    leaves its NaN out of the CLIP and DINO losses; this is the same mean without the NaN.
    Example: per-ray losses (1, 3, 7) with the last ray empty -> (1 + 3) / 2 = 2.
    """
    keep = keep.to(per_ray.dtype)
    return (per_ray * keep).sum() / keep.sum().clamp_min(1.0)


def clip_loss(pred: Float[Tensor, "r d"], target: Float[Tensor, "r d"], kind: str, delta: float,
              keep: Tensor) -> Tensor:
    """Huber (LERF's choice, δ = 1.25, summed over channels) or cosine distance, mean over the
    rays in `keep` (`masked_ray_mean`)."""
    if kind == "huber":
        per_ray = F.huber_loss(pred, target, delta=delta, reduction="none").sum(-1)
    elif kind == "cosine":
        per_ray = 1 - F.cosine_similarity(pred, target, dim=-1)
    else:
        raise ValueError(f"model.language.clip_loss must be huber or cosine, got '{kind}'")
    return masked_ray_mean(per_ray, keep)


def language_losses(model: LerfModel, out: dict[str, Tensor], batch, sup: LanguageSupervision,
                    generator: torch.Generator) -> tuple[Tensor, dict[str, float], ScaleRange]:
    """The weighted CLIP and DINO losses of a batch, their values for the logs, and the range of
    scales the batch was supervised at."""
    lcfg = model.cfg.language
    device = batch.u.device
    pos, w, t = model.language_samples(out, lcfg.samples_per_ray)
    if 0 < lcfg.rays_per_batch < batch.u.shape[0]:  # a subset of the batch, evenly spread
        idx = spread_indices(batch.u.shape[0], lcfg.rays_per_batch).to(device)
        batch, pos, w, t = batch.subset(idx), pos[idx], w[idx], t[idx]
    fracs = sample_crop_fracs(batch.u.shape[0], sup, generator).to(device)
    crops = TrainingCrops(fracs, sup.image_height, sup.fy_px[batch.image_idx], sup.clip_pyramid.min_frac,
                          sup.clip_pyramid.max_frac)
    scales = training_scales(lcfg.scale_mode, crops, t, batch.z_per_t, model.geometry.scale_factor,
                             lcfg.nominal_depth_m)
    pred = model.render_language(pos, w, scales)
    keep = w.sum(-1) > 0  # a ray with no language weight renders nothing: left out of both losses
    target = sup.clip_pyramid.lookup(batch.image_idx, batch.u, batch.v, fracs).to(device)
    loss_clip = clip_loss(pred["clip"], target, lcfg.clip_loss, lcfg.huber_delta, keep)
    total = lcfg.clip_weight * loss_clip
    logs = {"loss/clip": loss_clip.item()}
    if "dino" in pred and sup.dino_maps is not None:
        dino_target = sup.dino_maps.lookup(batch.image_idx, batch.u, batch.v).to(device)
        loss_dino = masked_ray_mean(((pred["dino"] - dino_target) ** 2).sum(-1), keep)
        total = total + lcfg.dino_weight * loss_dino
        logs["loss/dino"] = loss_dino.item()
    # The scales this batch was supervised at: the checkpoint keeps their range so a query can
    # warn when it searches scales training never saw.
    return total, logs, ScaleRange.of(scales, scale_unit(lcfg.scale_mode))
