"""Which torch device a run uses: `auto` is resolved once, here, and logged."""
from __future__ import annotations

import logging

import torch

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
        raise RuntimeError(f"device={name} but CUDA is not available on this machine; use device=auto or cpu")
    return device


def set_threads(num_threads: int) -> None:
    """torch's CPU thread count; 0 keeps torch's default."""
    if num_threads > 0:
        torch.set_num_threads(num_threads)
