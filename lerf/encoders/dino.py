"""DINO ViT-S/8 dense features (Caron et al. 2021), LERF's extra supervision (LERF §3.3).

What the authors' code extracts (kerrj/lerf `DinoDataloader`): model `dino_vits8`, stride 8,
images resized so the shorter side is 500 px (`dino_load_size = 500`), descriptors = the *keys*
of the last block's attention (`dino_layer = 11`, `dino_facet = "key"`), CLS dropped. We do the
same with timm's `vit_small_patch8_224.dino` (the same weights, re-hosted), whose position
embedding is interpolated to any image size (`dynamic_img_size=True`). `facet="token"` gives the
last block's normalised output tokens instead.

Resizing: shorter side -> `load_size`, then both sides rounded to multiples of the 8 px patch so
every patch is whole. One feature per patch; in input-image pixels a cell is
(h / rows, w / cols) — e.g. 1080 x 1440 -> 504 x 672 -> 63 x 84 cells of 17.1 px.

Weights follow the same rules as `openclip.py`: `checkpoint=<file>` (timm's `model.safetensors`
or the original `dino_deitsmall8_pretrain.pth`), else timm's hub download, else a
`WeightsNotFoundError` naming the file; random weights only with `allow_random_weights=True`.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from lerf.encoders._compat import import_timm
from lerf.encoders.base import WeightsNotFoundError, file_sha256, stride_from_grid

log = logging.getLogger(__name__)

DEFAULT_MODEL = "vit_small_patch8_224.dino"
HF_REPO = "timm/vit_small_patch8_224.dino"
HF_FILE = "model.safetensors"
ORIGINAL_URL = "https://dl.fbaipublicfiles.com/dino/dino_deitsmall8_pretrain/dino_deitsmall8_pretrain.pth"
LOAD_SIZE = 500  # authors' dino_load_size: shorter image side fed to DINO
RANDOM_SEED = 0
# ImageNet statistics, which DINO was trained with (timm's pretrained cfg for this tag).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def missing_weights_message(model: str, reason: str) -> str:
    return (
        f"DINO weights for {model} are not available: {reason}\n"
        f"Download `{HF_FILE}` from https://huggingface.co/{HF_REPO}/tree/main (e.g. "
        f"`huggingface-cli download {HF_REPO} {HF_FILE} --local-dir weights/dino`) or the original "
        f"`dino_deitsmall8_pretrain.pth` from {ORIGINAL_URL}, put it e.g. at weights/dino/{HF_FILE}, "
        f"and point the config at it: encoder.dino_checkpoint=weights/dino/{HF_FILE} "
        f"(or DinoEncoder(checkpoint=...)).")


def download_weights(model: str) -> str:
    """timm's Hugging Face hub file for `model`; a separate function so tests can make it fail."""
    from huggingface_hub import hf_hub_download
    if model != DEFAULT_MODEL:
        raise WeightsNotFoundError(f"no download rule for {model}; pass checkpoint=")
    return hf_hub_download(HF_REPO, HF_FILE)


def resolve_checkpoint(model: str, checkpoint: Optional[str]) -> str:
    if checkpoint is not None:
        if not Path(checkpoint).is_file():
            raise WeightsNotFoundError(missing_weights_message(
                model, f"checkpoint file {checkpoint!r} does not exist"))
        return str(checkpoint)
    try:
        return download_weights(model)
    except Exception as err:  # any failure of the hub download means the same fix
        raise WeightsNotFoundError(missing_weights_message(
            model, f"download failed ({type(err).__name__}: {err})")) from err


def load_state_dict(path: str) -> dict[str, Tensor]:
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file
        return load_file(path)
    sd = torch.load(path, map_location="cpu", weights_only=True)
    # Some DINO releases wrap the weights (e.g. {"teacher": ...} or {"model": ...}).
    for wrapper in ("teacher", "model", "state_dict"):
        if isinstance(sd.get(wrapper), dict):
            sd = sd[wrapper]
    return {k.removeprefix("module.").removeprefix("backbone."): v for k, v in sd.items()}


def resized_hw(height: int, width: int, load_size: Optional[int], patch: int) -> tuple[int, int]:
    """Shorter side -> load_size (None: keep), then each side rounded to a multiple of `patch`.

    Example: (1080, 1440), 500, 8 -> (500, 667) -> (504, 664).
    """
    scale = 1.0 if load_size is None else load_size / min(height, width)
    return tuple(max(patch, round(s * scale / patch) * patch) for s in (height, width))


class DinoEncoder:
    """`DenseEncoder` backed by timm's DINO ViT-S/8 (module docstring has the details)."""

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        checkpoint: Optional[str] = None,
        device: str | torch.device = "cpu",
        load_size: Optional[int] = LOAD_SIZE,
        facet: str = "key",
        allow_random_weights: bool = False,
    ):
        if facet not in ("key", "token"):
            raise ValueError(f"facet must be 'key' (authors' choice) or 'token', not {facet!r}")
        if allow_random_weights and checkpoint is not None:
            raise ValueError("allow_random_weights=True and a checkpoint are contradictory; pass one")
        timm = import_timm()
        self.model_name, self.load_size, self.facet = model, load_size, facet
        self.device = torch.device(device)
        with torch.random.fork_rng(devices=[]):  # fixed init, global RNG untouched
            torch.manual_seed(RANDOM_SEED)
            net = timm.create_model(model, pretrained=False, num_classes=0, dynamic_img_size=True)
        if allow_random_weights:
            log.warning("!" * 20 + " DINO %s with RANDOM weights (allow_random_weights=True): "
                        "features are meaningless; tests/benchmarks only " + "!" * 20, model)
            self.weights_id = f"random(seed={RANDOM_SEED})"
        else:
            path = resolve_checkpoint(model, checkpoint)
            self._load(net, path)
            self.weights_id = "sha256:" + file_sha256(path)
            log.info("DINO %s loaded from %s", model, path)
        self.net = net.to(self.device).eval()
        self.patch_px = int(net.patch_embed.patch_size[0])
        self.feature_dim = int(net.embed_dim)
        self.name = f"dino_{model}_{facet}"

    @staticmethod
    def _load(net: torch.nn.Module, path: str) -> None:
        """Load strictly: a checkpoint that misses weights must fail, not leave them random."""
        from timm.models.vision_transformer import checkpoint_filter_fn
        sd = load_state_dict(path)
        sd = {k: v for k, v in sd.items() if not k.startswith("head")}
        sd = checkpoint_filter_fn(sd, net)  # resizes pos_embed etc. if the file's grid differs
        net.load_state_dict(sd, strict=True)

    def cache_key(self) -> dict:
        return {"encoder": "dino", "model": self.model_name, "weights": self.weights_id,
                "load_size": self.load_size, "facet": self.facet,
                "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}

    def grid_hw(self, height: int, width: int) -> tuple[int, int]:
        h, w = resized_hw(height, width, self.load_size, self.patch_px)
        return h // self.patch_px, w // self.patch_px

    def stride_px(self, height: int, width: int) -> tuple[float, float]:
        return stride_from_grid(height, width, self.grid_hw(height, width))

    @torch.no_grad()
    def encode_dense(
        self, rgb: Float[Tensor, "n 3 h w"], ids: Optional[Int[Tensor, "n h w"]] = None
    ) -> Float[Tensor, "n gh gw d"]:
        n, _, h, w = rgb.shape
        gh, gw = self.grid_hw(h, w)
        x = F.interpolate(rgb.to(self.device, torch.float32), size=(gh * self.patch_px, gw * self.patch_px),
                          mode="bilinear", align_corners=False, antialias=True)
        mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)
        x = (x - mean) / std
        last = len(self.net.blocks) - 1
        if self.facet == "token":
            (tokens,) = self.net.forward_intermediates(
                x, indices=[last], norm=True, output_fmt="NLC", intermediates_only=True)
        else:
            # Keys are a per-token function of the last block's input (norm1 then the k third of
            # qkv), so the block-10 patch tokens are all we need; CLS never enters.
            (tokens,) = self.net.forward_intermediates(
                x, indices=[last - 1], norm=False, output_fmt="NLC", intermediates_only=True,
                stop_early=True)
            block = self.net.blocks[last]
            d = self.feature_dim
            tokens = block.attn.qkv(block.norm1(tokens))[..., d:2 * d]
        return tokens.float().reshape(n, gh, gw, -1)
