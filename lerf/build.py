"""Build the model from its config, resolving every `auto` choice once and loudly."""
from __future__ import annotations

import logging

import torch

from lerf.config import ModelConfig
from lerf.fields.hashgrid import resolve_hashgrid_backend
from lerf.model import LerfModel, SceneGeometry

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """`auto` -> cuda if available, else mps, else cpu; an explicit unavailable device is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            device = torch.device("cuda")
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            device = torch.device("mps")
        else:
            device = torch.device("cpu")
        log.info("device: auto -> %s", device)
        return device
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"trainer.device={name} but CUDA is not available on this machine; use device=auto or cpu")
    return device


def set_threads(num_threads: int) -> None:
    if num_threads > 0:
        torch.set_num_threads(num_threads)


def build_model(cfg: ModelConfig, geometry: SceneGeometry, device: torch.device, clip_dim: int = 0,
                dino_dim: int = 0) -> tuple[LerfModel, str]:
    backend = resolve_hashgrid_backend(cfg.backend, device)
    model = LerfModel(cfg, geometry, backend, clip_dim, dino_dim).to(device)
    return model, backend
