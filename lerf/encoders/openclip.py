"""OpenCLIP image/text encoder: ViT-B-16 trained on LAION-2B (`laion2b_s34b_b88k`), LERF's choice
(the authors' `OpenCLIPNetworkConfig`: clip_model_type="ViT-B-16",
clip_model_pretrained="laion2b_s34b_b88k", 512-d embeddings).

Weights, in order of preference:
1. `checkpoint=<local file>` — loads fully offline (`.safetensors`, `.bin` or `.pt`).
2. no checkpoint — open_clip's own Hugging Face download (cached in ~/.cache/huggingface); if that
   fails (offline machine), a `WeightsNotFoundError` says which file to fetch and where to put it.
3. `allow_random_weights=True` — random initialisation, for tests and speed benchmarks only.
   Logs a loud warning; never chosen implicitly.

Example (offline, with the file downloaded beforehand):
    enc = OpenClipEncoder(checkpoint="weights/openclip/open_clip_pytorch_model.bin", device="cuda")
    enc.encode_text(["red mug"]).shape  # (1, 512), unit norm
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import torch
from jaxtyping import Float, Int
from torch import Tensor

from lerf.encoders._compat import import_open_clip
from lerf.encoders.base import WeightsNotFoundError, file_sha256, resize_square, unit_normalise

log = logging.getLogger(__name__)

DEFAULT_MODEL = "ViT-B-16"
DEFAULT_PRETRAINED = "laion2b_s34b_b88k"
# open_clip's pretrained table (open_clip/pretrained.py) maps the tag to this Hugging Face repo.
# Its weight file is open_clip's HF_WEIGHTS_NAME (constants.py), `open_clip_pytorch_model.bin`
# (~600 MB); open_clip first tries a `.safetensors` twin, which some LAION repos have.
HF_REPO = "laion/CLIP-ViT-B-16-laion2B-s34B-b88K"
HF_FILE = "open_clip_pytorch_model.bin"
RANDOM_SEED = 0


def missing_weights_message(model: str, pretrained: str, reason: str) -> str:
    repo = HF_REPO if (model, pretrained) == (DEFAULT_MODEL, DEFAULT_PRETRAINED) else (
        f"the Hugging Face repo open_clip lists for {model}/{pretrained} (open_clip.list_pretrained())")
    return (
        f"OpenCLIP weights for {model} / {pretrained} are not available: {reason}\n"
        f"Download `{HF_FILE}` (or its .safetensors twin, if the repo has one) from "
        f"https://huggingface.co/{repo}/tree/main (e.g. `huggingface-cli download {repo} "
        f"{HF_FILE} --local-dir weights/openclip`), put it e.g. at weights/openclip/{HF_FILE}, "
        f"and point the config at it: encoder.clip_checkpoint=weights/openclip/{HF_FILE} "
        f"(or OpenClipEncoder(checkpoint=...)).")


def download_weights(model: str, pretrained: str) -> str:
    """open_clip's own hub download of the tagged weights; returns the local file path.

    Kept as a separate function so the offline path is testable without a network (tests
    replace it with one that raises).
    """
    open_clip = import_open_clip()
    cfg = open_clip.get_pretrained_cfg(model, pretrained)
    if not cfg:
        raise WeightsNotFoundError(f"open_clip knows no pretrained tag {pretrained!r} for {model}")
    return str(open_clip.pretrained.download_pretrained(cfg))


def resolve_checkpoint(model: str, pretrained: str, checkpoint: Optional[str]) -> str:
    """A local weights file, downloading it if no `checkpoint` was given; a clear error if neither
    works."""
    if checkpoint is not None:
        if not Path(checkpoint).is_file():
            raise WeightsNotFoundError(missing_weights_message(
                model, pretrained, f"checkpoint file {checkpoint!r} does not exist"))
        return str(checkpoint)
    try:
        return download_weights(model, pretrained)
    except Exception as err:  # any failure of the hub download means the same fix
        raise WeightsNotFoundError(missing_weights_message(
            model, pretrained, f"download failed ({type(err).__name__}: {err})")) from err


class OpenClipEncoder:
    """`ClipEncoder` backed by an OpenCLIP model (see module docstring for the weight rules)."""

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        pretrained: str = DEFAULT_PRETRAINED,
        checkpoint: Optional[str] = None,
        device: str | torch.device = "cpu",
        precision: str = "fp32",  # the authors run fp16 on GPU; fp16 matmuls are slow on CPU
        allow_random_weights: bool = False,
        input_px: Optional[int] = None,  # None: the model's own; else open_clip's force_image_size
    ):
        open_clip = import_open_clip()
        self.model_name, self.pretrained, self.precision = model, pretrained, precision
        self.device = torch.device(device)
        if allow_random_weights and checkpoint is not None:
            raise ValueError("allow_random_weights=True and a checkpoint are contradictory; pass one")
        if allow_random_weights:
            log.warning("!" * 20 + " OpenCLIP %s with RANDOM weights (allow_random_weights=True): "
                        "features are meaningless; tests/benchmarks only " + "!" * 20, model)
            weights_path, self.weights_id = None, f"random(seed={RANDOM_SEED})"
            with torch.random.fork_rng(devices=[]):  # a fixed init without touching global RNG
                torch.manual_seed(RANDOM_SEED)
                self.model = open_clip.create_model(model, pretrained=None, precision=precision,
                                                   force_image_size=input_px)
        else:
            weights_path = resolve_checkpoint(model, pretrained, checkpoint)
            self.weights_id = "sha256:" + file_sha256(weights_path)
            self.model = open_clip.create_model(model, pretrained=weights_path, precision=precision,
                                               force_image_size=input_px)
            log.info("OpenCLIP %s loaded from %s", model, weights_path)
        self.model = self.model.to(self.device).eval()
        self.tokenizer = open_clip.get_tokenizer(model)
        # Input statistics of the tag's training data (OpenAI's for the LAION ViT-B-16 tags).
        pcfg = open_clip.get_pretrained_cfg(model, pretrained) or {}
        self.mean = tuple(pcfg.get("mean") or open_clip.OPENAI_DATASET_MEAN)
        self.std = tuple(pcfg.get("std") or open_clip.OPENAI_DATASET_STD)
        size = self.model.visual.image_size
        self.input_px = int(size[0] if isinstance(size, (tuple, list)) else size)
        self.embed_dim = int(self.model.text_projection.shape[-1]
                             if hasattr(self.model, "text_projection") else self.model.embed_dim)
        self.name = f"openclip_{model}_{pretrained}"

    def cache_key(self) -> dict:
        return {"encoder": "openclip", "model": self.model_name, "pretrained": self.pretrained,
                "weights": self.weights_id, "input_px": self.input_px, "precision": self.precision,
                "mean": list(self.mean), "std": list(self.std)}

    @property
    def _dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @torch.no_grad()
    def encode_crops(
        self, rgb: Float[Tensor, "n 3 s s"], ids: Optional[Int[Tensor, "n s s"]] = None
    ) -> Float[Tensor, "n d"]:
        x = resize_square(rgb.to(self.device, torch.float32), self.input_px)
        mean = torch.tensor(self.mean, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=self.device).view(1, 3, 1, 1)
        x = ((x - mean) / std).to(self._dtype)
        return unit_normalise(self.model.encode_image(x))

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> Float[Tensor, "n d"]:
        tokens = self.tokenizer(list(texts)).to(self.device)
        return unit_normalise(self.model.encode_text(tokens))
