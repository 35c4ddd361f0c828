"""The demo scene's ground truth that real captures lack: part ids, depths, the hierarchy.

The scene loader attaches it to `SceneData.demo` when the scene's labels.json has a hierarchy
(only the demo scene writes one); the instrument (reference encoders, oracle, part_fit) reads it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from lerf.data.cameras import Cameras
from lerf.data.nerfstudio import RawScene, SceneFormatError


@dataclass
class DemoTruth:
    # What the reference CLIP encoder reads: part ids, camera-z depth in metres (inf on a miss)
    # and labels.json's part/object/group "hierarchy".
    part_ids: Optional[Int[Tensor, "n h w"]]
    depth_z_m: Optional[Float[Tensor, "n h w"]]
    hierarchy: dict


def _read_npy(path) -> np.ndarray:
    """A float64 array from a .npy file; a damaged (truncated, emptied) file is one line naming it."""
    try:
        return np.load(path).astype(np.float64)
    except (OSError, ValueError, EOFError) as err:
        raise SceneFormatError(f"{path}: cannot read ({type(err).__name__}: {err or 'empty file'}); "
                               "expected a .npy array") from None


def load_depth_z(raw: RawScene, cameras: Cameras) -> Optional[Tensor]:
    """Camera-z depth in metres from the demo's depths/*.npy (distance along each pixel-centre ray)."""
    paths = raw.extras.get("depth", [])
    if not paths or any(p is None or not str(p).endswith(".npy") for p in paths):
        return None
    t = np.stack([_read_npy(raw.root / p) for p in paths])
    if t.shape[1:] != (cameras.height, cameras.width):
        return None  # e.g. a downscaled load: no depth rather than a wrong one
    # In float64 NumPy: the result is a key of the feature cache (through metres per pixel), and
    # torch's float32 kernels were seen to give depths differing by up to 5e-4 (relative) between
    # loads, in half the frames, about one load in four (2 threads, torch 2.13 CPU).
    j, i = np.meshgrid(np.arange(cameras.width) + 0.5, np.arange(cameras.height) + 0.5, indexing="xy")
    c = {k: getattr(cameras, k).double().numpy()[:, None, None] for k in ("cx_px", "cy_px", "fx_px", "fy_px")}
    x = (j[None] - c["cx_px"]) / c["fx_px"]
    y = (i[None] - c["cy_px"]) / c["fy_px"]
    return torch.from_numpy((t / np.sqrt(1 + x * x + y * y)).astype(np.float32))  # z = t cos(angle to the axis)
