"""Render a whole view of a trained model, in chunks of rays, without gradients.

The one view-rendering loop of the project: novel-view evaluation, TensorBoard images, the cached
query engine (CLIP factors as extras) and the exact query all call `render_view`.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor

from lerf.data.cameras import Cameras, camera_rays, image_pixels
from lerf.data.units import ray_t_to_depth_m

# extras(model outputs of a chunk, z_per_t of its rays) -> {name: tensor with rays first}
Extras = Callable[[dict[str, Tensor], Tensor], dict[str, Tensor]]


@torch.no_grad()
def render_view(model, cameras: Cameras, index: int, chunk: int = 4096,
                extras: Optional[Extras] = None) -> dict[str, Tensor]:
    """Render camera `index` at full resolution.

    Returns rgb [h, w, 3], depth_m [h, w] (camera z, world units), accumulation [h, w] — float32
    on the CPU — plus every tensor `extras` returns per chunk (rays first), reshaped to
    [h, w, ...] and left on the device and dtype `extras` chose (a cache may stay on the GPU).

    Appearance: every view renders with the model's eval choice (`model.appearance_eval`, the
    mean training embedding by default), never a training frame's own vector: `cameras` may be
    a camera path or a resized copy, so `index` does not name a scene frame, and a view should
    not change colour with the exposure of whichever photo was taken there.
    """
    device = next(model.parameters()).device
    h, w = cameras.height, cameras.width
    u, v = image_pixels(w, h, device)
    idx = torch.full_like(u, index, dtype=torch.long)
    cams = cameras.to(device)
    pieces: dict[str, list[Tensor]] = {}
    for start in range(0, u.shape[0], chunk):
        sl = slice(start, start + chunk)
        origins, dirs, z_per_t = camera_rays(cams, idx[sl], u[sl], v[sl])
        out = model(origins, dirs, jitter=False)
        depth_m = ray_t_to_depth_m(out["depth"], z_per_t, model.geometry.scale_factor)
        result = {key: value.float().cpu() for key, value in
                  (("rgb", out["rgb"]), ("accumulation", out["accumulation"]), ("depth_m", depth_m))}
        if extras is not None:
            result.update(extras(out, z_per_t))
        for key, value in result.items():
            pieces.setdefault(key, []).append(value)
    return {key: torch.cat(vals).reshape(h, w, *vals[0].shape[1:]) for key, vals in pieces.items()}
