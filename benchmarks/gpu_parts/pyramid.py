"""CLIP pyramid build time per image at 994x738 with the OpenCLIP ViT-B/16 architecture through
the real cache path (bench_pyramid.build_and_time), extrapolated to a 200-image scene; whether the
weights were real or random is recorded (the cost of a forward pass does not depend on them).
Dry run: one 64x48 image, the coarsest level only."""
from __future__ import annotations

import argparse

import torch

from bench_pyramid import LERF_FRACS, build_and_time
from gpu_parts.context import Context
from lerf.encoders.factory import build_clip_encoder
from lerf.encoders.pyramid import pyramid_grids

SCENE_IMAGES = 200


def encoder_and_weights(ctx: Context):
    """The real laion2b weights when open_clip can load them (cached or downloadable), else random."""
    precision = "fp16" if ctx.device.type == "cuda" else "fp32"
    if not ctx.dry_run:
        try:
            return build_clip_encoder("openclip", device=ctx.device, precision=precision), "real"
        except Exception as err:  # noqa: BLE001  (absent weights on an offline machine)
            print(f"pyramid: real OpenCLIP weights unavailable ({str(err).splitlines()[0]}): random weights")
    return build_clip_encoder("openclip", device=ctx.device, precision=precision, allow_random_weights=True), "random"


def run(ctx: Context) -> dict:
    encoder, weights = encoder_and_weights(ctx)
    width, height = ctx.size((994, 738), (64, 48))
    images = ctx.size(8, 1)
    fracs = ctx.size(LERF_FRACS, LERF_FRACS[-1:])
    args = argparse.Namespace(images=images, height=height, width=width, fracs=fracs, batch_size=ctx.size(256, 8),
                              rays=4096)
    pixels = torch.rand(images, height, width, 3, generator=torch.Generator().manual_seed(0))
    total_s, disk_bytes, sidecar, _ = build_and_time(args, encoder, pixels)
    crops = images * sum(lv.cells_per_image for lv in pyramid_grids(height, width, fracs))
    crops_full = sum(lv.cells_per_image for lv in pyramid_grids(height, width, LERF_FRACS))
    s_per_image = sidecar["build_s"] / images * crops_full / (crops / images)
    return {"weights": weights, "encoder": encoder.cache_key(), "images_measured": images,
            "resolution": [width, height], "crop_fracs_built": list(fracs), "crops_measured": crops,
            "measured_s": sidecar["build_s"], "measured_s_incl_hash_and_load": total_s,
            "s_per_image": s_per_image, "crops_per_image_full_pyramid": crops_full,
            f"extrapolated_{SCENE_IMAGES}_images_s": s_per_image * SCENE_IMAGES,
            "disk_mb_per_image": sum(v for k, v in disk_bytes.items() if k.endswith(".npy")) / images / 2**20,
            "note": f"measured on {images} images; the {SCENE_IMAGES}-image figure is extrapolated per crop"}
