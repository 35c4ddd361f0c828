"""Build an encoder from its kind name (what the config's `encoder.clip` / `encoder.dino` say).

The device is always passed in by the caller (the trainer resolves "auto" once); nothing here
picks a device. Options go straight to the encoder's constructor, so a misspelt option is a
TypeError naming it, and an unknown kind is a ValueError listing the known ones.

Example:
    build_clip_encoder("reference", labels={1: "red mug"}, dim=128)
    build_clip_encoder("openclip", checkpoint="weights/openclip/open_clip_pytorch_model.bin", device="cuda")
    build_dino_encoder("dino", checkpoint="weights/dino/model.safetensors", device="cuda")
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import hydra.utils
import torch
from jaxtyping import Float, Int
from torch import Tensor

from lerf.config import TrainConfig
from lerf.encoders.base import ClipEncoder, DenseEncoder
from lerf.encoders.pyramid import Images, PyramidInputs, linspace_fracs


def _openclip(**options: Any) -> ClipEncoder:
    from lerf.encoders.openclip import OpenClipEncoder  # imports open_clip only when asked for
    return OpenClipEncoder(**options)


def _dino(**options: Any) -> DenseEncoder:
    from lerf.encoders.dino import DinoEncoder  # imports timm only when asked for
    return DinoEncoder(**options)


def _by_name(dotted: str) -> Callable[..., Any]:
    """The demo instrument's reference encoders (lerf/demo/reference.py), looked up by name when a
    config picks them: the encoders package does not depend on lerf.demo, which builds on it."""
    return lambda **options: hydra.utils.get_class(dotted)(**options)


CLIP_KINDS: dict[str, Callable[..., ClipEncoder]] = {
    "openclip": _openclip, "reference": _by_name("lerf.demo.reference.ReferenceClipEncoder")}
DINO_KINDS: dict[str, Callable[..., DenseEncoder]] = {
    "dino": _dino, "reference": _by_name("lerf.demo.reference.ReferenceDinoEncoder")}


def build_clip_encoder(kind: str, device: str | torch.device = "cpu", **options: Any) -> ClipEncoder:
    """kind "openclip" (OpenClipEncoder options: model, pretrained, checkpoint, precision,
    allow_random_weights) or "reference" (ReferenceClipEncoder: labels, dim, input_px)."""
    if kind not in CLIP_KINDS:
        raise ValueError(f"unknown CLIP encoder kind {kind!r}; known: {sorted(CLIP_KINDS)}")
    return CLIP_KINDS[kind](device=device, **options)


def build_dino_encoder(kind: str, device: str | torch.device = "cpu", **options: Any) -> DenseEncoder:
    """kind "dino" (DinoEncoder options: model, checkpoint, load_size, facet,
    allow_random_weights) or "reference" (ReferenceDinoEncoder: dim, stride_px, hierarchy)."""
    if kind not in DINO_KINDS:
        raise ValueError(f"unknown DINO encoder kind {kind!r}; known: {sorted(DINO_KINDS)}")
    return DINO_KINDS[kind](device=device, **options)



def encoder_options(cfg: TrainConfig, scene, kind: str) -> dict:
    """Constructor options of the `kind` ("clip" or "dino") encoder a run's config names, for
    `scene` (the reference encoders read the demo scene's hierarchy of parts, objects, groups)."""
    e = cfg.encoder
    if kind == "clip":
        if e.clip == "reference":
            return {"hierarchy": _require_hierarchy(scene, "encoder.clip=reference"), "dim": e.reference_clip_dim,
                    "generic_phrases": list(cfg.relevancy.canonical_phrases)}
        return {"model": e.clip_model, "pretrained": e.clip_pretrained, "checkpoint": e.clip_checkpoint,
                "input_px": e.clip_input_px, "allow_random_weights": e.allow_random_weights}
    if e.dino == "reference":
        return {"dim": e.reference_dino_dim, "stride_px": e.reference_dino_stride,
                "hierarchy": scene.demo.hierarchy if _has_parts(scene) else None}
    return {"model": e.dino_model, "checkpoint": e.dino_checkpoint, "load_size": e.dino_load_size,
            "allow_random_weights": e.allow_random_weights}


def _require_hierarchy(scene, what: str) -> dict:
    if scene.demo is None:
        raise ValueError(f"{what} needs a scene with part-id masks, depths and labels.json (the demo scene); "
                         f"{scene.root} has none. Use encoder=openclip for real scenes.")
    return scene.demo.hierarchy


def clip_encoder_for(cfg: TrainConfig, scene, device: torch.device) -> ClipEncoder:
    """The CLIP encoder a run's config names (training supervises with it, queries embed text)."""
    return build_clip_encoder(cfg.encoder.clip, device, **encoder_options(cfg, scene, "clip"))


def dino_encoder_for(cfg: TrainConfig, scene, device: torch.device) -> DenseEncoder:
    return build_dino_encoder(cfg.encoder.dino, device, **encoder_options(cfg, scene, "dino"))


def _has_parts(scene) -> bool:
    """Whether the reference DINO is part-aware on `scene`: it needs the hierarchy and part ids."""
    return scene.demo is not None and scene.demo.part_ids is not None


def dino_ids_for(cfg: TrainConfig, scene):
    """The id masks the DINO encoder reads: part ids for the part-aware reference encoder (the
    demo scene), object ids (or none) otherwise."""
    return scene.demo.part_ids if cfg.encoder.dino == "reference" and _has_parts(scene) else scene.object_ids


def pyramid_crop_fracs(cfg: TrainConfig) -> list[float]:
    """Pyramid crop sizes (fraction of image height) a run's config names: LERF §3.1, 5%–50% over
    7 levels, linearly spaced as the authors' torch.linspace."""
    e = cfg.encoder
    return linspace_fracs(e.pyramid_min_frac, e.pyramid_max_frac, e.pyramid_levels)


def pyramid_inputs(cfg: TrainConfig, images: Images, ids: Optional[Int[Tensor, "n h w"]], encoder: ClipEncoder,
                   px_m: Optional[Float[Tensor, "n h w"]] = None) -> PyramidInputs:
    """The CLIP pyramid a run's config names (crop grid and stride) on `images`."""
    return PyramidInputs(images, ids, encoder, pyramid_crop_fracs(cfg), cfg.encoder.pyramid_stride_scaler, px_m)
