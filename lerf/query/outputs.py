"""Files written for a query: raw map, colormapped PNG, overlay on the render, JSON summary."""
from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from lerf.query.engine import QueryResult, ViewRender
from lerf.query.images import colorize, overlay, to_uint8


def prompt_dirname(prompt: str) -> str:
    """A safe folder name for a prompt: 'red mug' -> 'red_mug'."""
    keep = "".join(c if c.isalnum() or c in "-_" else "_" for c in prompt.strip())
    return keep.strip("_") or "prompt"


def check_writable(paths: list[Path], overwrite: bool) -> None:
    """Refuse to replace earlier outputs unless asked to."""
    existing = [p for p in paths if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]} exists (and {len(existing) - 1} more); pass overwrite=true "
                              "to replace them or out=<dir> to write elsewhere. Nothing was written.")


def output_paths(out_dir: Path, view: str) -> dict[str, Path]:
    return {"npy": out_dir / f"{view}_relevancy.npy", "png": out_dir / f"{view}_relevancy.png",
            "overlay": out_dir / f"{view}_overlay.png", "rgb": out_dir / f"{view}_rgb.png",
            "json": out_dir / f"{view}.json"}


def save_query(result: QueryResult, render: ViewRender, out_dir: Path, view: str, overwrite: bool = False) -> dict:
    paths = output_paths(out_dir, view)
    check_writable(list(paths.values()), overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)
    rel = result.relevancy
    np.save(paths["npy"], rel.numpy().astype(np.float32))
    iio.imwrite(paths["png"], to_uint8(colorize(rel, vmin=0.0, vmax=1.0)))
    iio.imwrite(paths["overlay"], to_uint8(overlay(render.rgb, rel)))
    iio.imwrite(paths["rgb"], to_uint8(render.rgb))
    x, y = result.peak()
    summary = {"prompt": result.prompt, "view": view, "scale_m": result.scale_m, "scale_index": result.scale_idx,
               "peak_xy": [x, y], "peak_relevancy": float(rel[y, x]), "peak_depth_m": float(render.depth_m[y, x]),
               "max_relevancy_per_scale": result.maps.reshape(result.maps.shape[0], -1).amax(-1).tolist()}
    paths["json"].write_text(json.dumps(summary, indent=2))
    return summary


def write_ply(path: Path, points: Float[Tensor, "n 3"], colors: Float[Tensor, "n 3"],
              values: Float[Tensor, " n"]) -> None:
    """Binary little-endian PLY with xyz (float32), rgb (uint8) and a float32 `relevancy` per
    vertex: a quarter the size of ASCII and read directly by MeshLab, CloudCompare, Open3D."""
    from plyfile import PlyData, PlyElement

    vertex = np.empty(points.shape[0], dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"),
                                              ("green", "u1"), ("blue", "u1"), ("relevancy", "<f4")])
    xyz = points.detach().cpu().float().numpy()
    rgb = (colors.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    for i, axis in enumerate("xyz"):
        vertex[axis] = xyz[:, i]
    for i, channel in enumerate(("red", "green", "blue")):
        vertex[channel] = rgb[:, i]
    vertex["relevancy"] = values.detach().cpu().float().numpy()
    PlyData([PlyElement.describe(vertex, "vertex")], text=False, byte_order="<").write(str(path))


def write_video(target: Path, frames: list, fps: int = 12) -> Path:
    """MP4 through imageio-ffmpeg (its wheel ships an ffmpeg binary); a GIF beside it only when
    that writer is missing or fails, and then the user is told so."""
    try:
        iio.imwrite(target, frames, fps=fps)
        return target
    except Exception as err:  # imageio-ffmpeg not installed, or its binary cannot run here
        gif = target.with_suffix(".gif")
        print(f"notice: could not write MP4 ({err}); wrote a GIF instead: {gif}. "
              "Install imageio-ffmpeg for MP4 output.")
        iio.imwrite(gif, frames, duration=1000 / fps, loop=0)
        return gif
