"""Render whole images from a trained model, in chunks of rays, without gradients."""
from __future__ import annotations

from typing import Callable, Optional

import torch
from jaxtyping import Float
from torch import Tensor

from lerf.data.cameras import Cameras, camera_rays, image_pixels
from lerf.model import LerfModel


@torch.no_grad()
def render_view(
    model: LerfModel, cameras: Cameras, cam: int, chunk: int = 4096,
    language: Optional[Callable[[dict[str, Tensor], Tensor], dict[str, Tensor]]] = None,
) -> dict[str, Tensor]:
    """Render camera `cam` at full resolution: rgb [h, w, 3], depth_m [h, w] (camera z, world
    units), accumulation [h, w]; plus whatever `language(outputs, z_per_t)` returns per ray,
    reshaped to [h, w, ...]."""
    device = next(model.parameters()).device
    h, w = cameras.height, cameras.width
    u, v = image_pixels(w, h, device)
    idx = torch.full_like(u, cam, dtype=torch.long)
    cams = cameras.to(device)
    pieces: dict[str, list[Tensor]] = {}
    for start in range(0, u.shape[0], chunk):
        sl = slice(start, start + chunk)
        origins, dirs, z_per_t = camera_rays(cams, idx[sl], u[sl], v[sl])
        out = model(origins, dirs, jitter=False)
        result = {"rgb": out["rgb"], "accumulation": out["accumulation"],
                  "depth_m": out["depth"] * z_per_t / model.geometry.scale_factor}
        if language is not None:
            result.update(language(out, z_per_t))
        for key, value in result.items():
            pieces.setdefault(key, []).append(value.float().cpu())
    return {key: torch.cat(vals).reshape(h, w, *vals[0].shape[1:]) for key, vals in pieces.items()}


def colorize(values: Float[Tensor, "h w"], cmap: str = "turbo", vmin: Optional[float] = None,
             vmax: Optional[float] = None) -> Float[Tensor, "h w 3"]:
    """Map a scalar image to colours with a matplotlib colormap (for PNGs and TensorBoard)."""
    import matplotlib

    lo = float(values.min()) if vmin is None else vmin
    hi = float(values.max()) if vmax is None else vmax
    norm = ((values - lo) / max(hi - lo, 1e-8)).clamp(0, 1).numpy()
    return torch.from_numpy(matplotlib.colormaps[cmap](norm)[..., :3]).float()


def to_uint8(img: Float[Tensor, "h w 3"]):
    return (img.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
