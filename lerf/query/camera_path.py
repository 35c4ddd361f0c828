"""Smooth camera paths through key cameras (for query videos)."""
from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from lerf.data.cameras import Cameras


def _orthonormalize(r: Float[Tensor, "3 3"]) -> Float[Tensor, "3 3"]:
    # Nearest rotation to a blend of rotations (polar decomposition via SVD).
    u, _, vh = torch.linalg.svd(r)
    rot = u @ vh
    if torch.det(rot) < 0:
        u[:, -1] = -u[:, -1]
        rot = u @ vh
    return rot


def interpolate_path(cameras: Cameras, keys: list[int], frames: int) -> Cameras:
    """`frames` cameras moving through the key cameras in order (and back to the first):
    positions linear, rotations blended and re-orthonormalised; intrinsics of keys[0]."""
    if len(keys) < 2:
        raise ValueError(f"a camera path needs at least 2 key cameras, got {len(keys)}")
    loop = keys + keys[:1]
    poses = []
    for f in range(frames):
        x = f / frames * (len(loop) - 1)
        i = min(int(x), len(loop) - 2)
        a = x - i
        p0, p1 = cameras.c2w[loop[i]], cameras.c2w[loop[i + 1]]
        rot = _orthonormalize((1 - a) * p0[:, :3] + a * p1[:, :3])
        poses.append(torch.cat([rot, ((1 - a) * p0[:, 3] + a * p1[:, 3])[:, None]], 1))
    k = keys[0]
    n = len(poses)
    return Cameras(torch.stack(poses), cameras.fx_px[k].repeat(n), cameras.fy_px[k].repeat(n),
                   cameras.cx_px[k].repeat(n), cameras.cy_px[k].repeat(n), cameras.width, cameras.height,
                   cameras.distortion[k].repeat(n, 1))
