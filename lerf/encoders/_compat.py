"""Import shims for third-party packages whose import can break on a CPU-only torch.

Why: on machines where torch is a CPU build but the only torchvision wheel available is a
CUDA build (e.g. torch 2.13.0+cpu with torchvision 0.28.0 from PyPI), torchvision's compiled
ops cannot load, and ``torchvision/_meta_registrations.py`` then fails at import on
``register_fake("torchvision::nms")``. open_clip and timm only use torchvision's Python
transforms, so declaring the two op schemas (without kernels) is enough to import them.
The shim only runs when the plain import fails, and only for that specific failure.
"""
from __future__ import annotations

import importlib
import logging
import sys

import torch

log = logging.getLogger(__name__)

_MISSING_OPS = ("nms", "qnms")


def _declare_missing_torchvision_ops() -> None:
    for op in _MISSING_OPS:
        if not torch._C._dispatch_has_kernel(f"torchvision::{op}"):
            try:
                torch.library.define(
                    f"torchvision::{op}", "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"
                )
            except RuntimeError:  # already declared by an earlier, partial import
                pass


def import_torchvision():
    """Import torchvision, working around a CPU torch paired with a CUDA torchvision build."""
    try:
        return importlib.import_module("torchvision")
    except RuntimeError as err:
        if "torchvision::" not in str(err):
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        log.warning("torchvision's compiled ops are unavailable (%s); declaring op schemas so its "
                    "Python transforms import. Detection ops will not work.", err)
        _declare_missing_torchvision_ops()
        return importlib.import_module("torchvision")


def import_open_clip():
    import_torchvision()
    return importlib.import_module("open_clip")


def import_timm():
    import_torchvision()
    return importlib.import_module("timm")
