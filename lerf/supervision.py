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
from lerf.encoders.cache import load_or_build_clip_pyramid, load_or_build_dino_maps
from lerf.encoders.factory import build_clip_encoder, build_dino_encoder
from lerf.encoders.pyramid import linspace_fracs
from lerf.model import LerfModel

log = logging.getLogger(__name__)


@dataclass
class LanguageSupervision:
    text_encoder: Any  # the CLIP encoder, for prompts (encode_text)
    clip_pyramid: Any
    dino_maps: Optional[Any]
    clip_dim: int
    dino_dim: int
    min_frac: float
    max_frac: float
    image_height: int
    fy_px: Float[Tensor, " n"]


def crop_fracs(cfg: TrainConfig) -> list[float]:
    """Pyramid crop sizes (fraction of image height): LERF §3.1, 5%–50% over 7 levels."""
    e = cfg.encoder
    return linspace_fracs(e.pyramid_min_frac, e.pyramid_max_frac, e.pyramid_levels)


def encoder_options(cfg: TrainConfig, scene: SceneData, kind: str) -> dict:
    e = cfg.encoder
    if kind == "clip":
        if e.clip == "reference":
            return {"hierarchy": _require_hierarchy(scene, "encoder.clip=reference"), "dim": e.reference_clip_dim,
                    "generic_phrases": list(cfg.relevancy.canonical_phrases)}
        return {"model": e.clip_model, "pretrained": e.clip_pretrained, "checkpoint": e.clip_checkpoint,
                "allow_random_weights": e.allow_random_weights}
    if e.dino == "reference":
        return {"dim": e.reference_dino_dim, "stride_px": e.reference_dino_stride}
    return {"model": e.dino_model, "checkpoint": e.dino_checkpoint, "allow_random_weights": e.allow_random_weights}


def _require_hierarchy(scene: SceneData, what: str) -> dict:
    if scene.hierarchy is None:
        raise ValueError(f"{what} needs a scene with part-id masks, depths and labels.json (the demo scene); "
                         f"{scene.root} has none. Use encoder=openclip for real scenes.")
    return scene.hierarchy


def metres_per_pixel(scene: SceneData) -> Float[Tensor, "n h w"]:
    """Camera-z depth / focal length per pixel: what one pixel spans, in metres, at its surface."""
    return scene.depth_z_m / scene.cameras.fy_px[:, None, None]


def _on_device(features, device: torch.device):
    # On an accelerator the whole table moves there so lookups gather on-device; on the CPU it
    # stays memory-mapped (read lazily).
    return features if device.type == "cpu" else features.to(device)


def build_supervision(cfg: TrainConfig, scene: SceneData, device: torch.device) -> LanguageSupervision:
    """Load (or compute once and cache) the CLIP pyramid and DINO maps of the training images."""
    images, ids = scene.images, scene.object_ids  # uint8: a quarter of the memory of floats
    cache_dir = Path(cfg.encoder.cache_dir).expanduser() / scene.root.name
    clip_encoder = build_clip_encoder(cfg.encoder.clip, device, **encoder_options(cfg, scene, "clip"))
    fracs = crop_fracs(cfg)
    if cfg.encoder.clip == "reference":  # the instrument reads parts and physical crop sizes
        _require_hierarchy(scene, "encoder.clip=reference")
        clip_ids, px_m = scene.part_ids, metres_per_pixel(scene)
    else:
        clip_ids, px_m = ids, None
    pyramid = load_or_build_clip_pyramid(cache_dir, images, clip_ids, clip_encoder, fracs,
                                         batch_size=cfg.encoder.batch_size, px_m=px_m)
    pyramid = _on_device(pyramid, device)
    dino_maps, dino_dim = None, 0
    if cfg.model.language.dino_enabled:
        dino_encoder = build_dino_encoder(cfg.encoder.dino, device, **encoder_options(cfg, scene, "dino"))
        dino_maps = _on_device(load_or_build_dino_maps(cache_dir, images, ids, dino_encoder), device)
        dino_dim = dino_maps.feature_dim
    return LanguageSupervision(clip_encoder, pyramid, dino_maps, clip_encoder.embed_dim, dino_dim,
                               min(fracs), max(fracs), scene.height, scene.cameras.fy_px.to(device))


def sample_crop_fracs(n: int, sup: LanguageSupervision, single: Optional[float],
                      generator: torch.Generator) -> Float[Tensor, " n"]:
    """Each training ray describes a crop of random size within the pyramid (LERF §3.1)."""
    if single is not None:
        return torch.full((n,), float(single))
    return sup.min_frac + (sup.max_frac - sup.min_frac) * torch.rand(n, generator=generator)


def clip_loss(pred: Float[Tensor, "r d"], target: Float[Tensor, "r d"], kind: str, delta: float) -> Tensor:
    """Huber (LERF's choice, δ = 1.25, summed over channels) or cosine distance, mean over rays."""
    if kind == "huber":
        return F.huber_loss(pred, target, delta=delta, reduction="none").sum(-1).mean()
    if kind == "cosine":
        return (1 - F.cosine_similarity(pred, target, dim=-1)).mean()
    raise ValueError(f"model.language.clip_loss must be huber or cosine, got '{kind}'")


def language_losses(model: LerfModel, out: dict[str, Tensor], batch, sup: LanguageSupervision,
                    generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
    lcfg = model.cfg.language
    device = batch.u.device
    fracs = sample_crop_fracs(batch.u.shape[0], sup, lcfg.single_scale, generator).to(device)
    crop_px_over_f = fracs * sup.image_height / sup.fy_px[batch.image_idx]
    scale_m = model.scale_m(out["depth"], batch.z_per_t, crop_px_over_f)
    pos, w = model.language_samples(out, lcfg.samples_per_ray)
    pred = model.render_language(pos, w, scale_m)
    target = sup.clip_pyramid.lookup(batch.image_idx, batch.u, batch.v, fracs).to(device)
    loss_clip = clip_loss(pred["clip"], target, lcfg.clip_loss, lcfg.huber_delta)
    total = lcfg.clip_weight * loss_clip
    logs = {"loss/clip": loss_clip.item()}
    if "dino" in pred and sup.dino_maps is not None:
        dino_target = sup.dino_maps.lookup(batch.image_idx, batch.u, batch.v).to(device)
        loss_dino = ((pred["dino"] - dino_target) ** 2).sum(-1).mean()
        total = total + lcfg.dino_weight * loss_dino
        logs["loss/dino"] = loss_dino.item()
    return total, logs
