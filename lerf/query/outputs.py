"""Files written for a query: raw map, colormapped PNG, overlay on the render, JSON summary."""
from __future__ import annotations

import hashlib
import re
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator, Optional

import imageio.v3 as iio
import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from lerf.data.atomic import replace_atomically, save_npy, write_json
from lerf.data.exclusive import exclusive
from lerf.query.engine import ViewRender
from lerf.query.images import colorize, overlay, to_uint8
from lerf.query.relevancy import QueryResult


SLUG_CHARS = 40


def prompt_dirname(prompt: str) -> str:
    """A bounded folder name for a prompt, unique per prompt text.

    Plain prompts (letters, digits, '-', single spaces, up to 40 characters) keep a readable
    name; any other prompt gets a cut-down slug plus a hash of its exact text, so two prompts never
    share a folder and a long prompt never makes a too-long file name.
    Example: 'red mug' -> 'red_mug'; 'red_mug' -> 'red_mug-<8 hex>'; 'mug?' -> 'mug-<8 hex>'.
    """
    if len(prompt) <= SLUG_CHARS and re.fullmatch(r"[A-Za-z0-9-]+( [A-Za-z0-9-]+)*", prompt):
        return prompt.replace(" ", "_")
    slug = re.sub(r"[^A-Za-z0-9-]+", "_", prompt).strip("_")[:SLUG_CHARS].strip("_") or "prompt"
    return f"{slug}-{hashlib.blake2b(prompt.encode(), digest_size=4).hexdigest()}"


FOLDER_LOCK = ".query.lock"


class QueryInUseError(RuntimeError):
    """Another process is writing into the same prompt folder."""

    user_error = True  # lerf.apps.cli prints it as one line


@contextmanager
def prompt_folders_locked(out_dirs: list[Path]) -> Iterator[None]:
    """Hold the lock of every prompt folder a query (or the viewer's Save) writes into, for the whole
    write: a second writer into any of them is refused at once, so no folder mixes two answers and
    no summary.json lists files another process replaced. Taken in sorted order (no deadlock)."""
    with ExitStack() as stack:
        for out_dir in sorted(set(out_dirs)):
            def busy(pid: str, out_dir: Path = out_dir) -> QueryInUseError:
                return QueryInUseError(f"{out_dir} is being written by pid {pid} (another query or the viewer's "
                                       "Save); wait for it to finish, then try again. Nothing was written")
            stack.enter_context(exclusive(out_dir / FOLDER_LOCK, busy))
        yield


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


def save_query(result: QueryResult, render: ViewRender, out_dir: Path, view: str, overwrite: bool = False,
               step: Optional[int] = None) -> dict:
    """The files of one prompt on one view; the JSON records the prompt text and the checkpoint
    step that answered it."""
    paths = output_paths(out_dir, view)
    check_writable(list(paths.values()), overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)
    rel = result.relevancy
    save_npy(paths["npy"], rel.numpy().astype(np.float32))
    iio.imwrite(paths["png"], to_uint8(colorize(rel, vmin=0.0, vmax=1.0)))
    iio.imwrite(paths["overlay"], to_uint8(overlay(render.rgb, rel)))
    iio.imwrite(paths["rgb"], to_uint8(render.rgb))
    x, y = result.peak()
    summary = {"prompt": result.prompt, "step": step, "view": view, "scale_m": result.scale_m, "scale_index": result.scale_idx,
               "peak_xy": [x, y], "peak_relevancy": float(rel[y, x]), "peak_depth_m": float(render.depth_m[y, x]),
               "max_relevancy_per_scale": result.maps.reshape(result.maps.shape[0], -1).amax(-1).tolist()}
    write_json(paths["json"], summary)
    return summary



def write_prompt_summary(out_dir: Path, summaries: list[dict]) -> Path:
    """<prompt folder>/summary.json: the summaries `save_query` returned for each view of one call."""
    path = out_dir / "summary.json"
    write_json(path, summaries)
    return path


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
    ply = PlyData([PlyElement.describe(vertex, "vertex")], text=False, byte_order="<")
    replace_atomically(path, lambda tmp: ply.write(str(tmp)), vertex.nbytes + 4096)


def write_video(target: Path, frames: list, fps: int = 12) -> Path:
    """MP4 through imageio-ffmpeg (its wheel ships an ffmpeg binary); a GIF beside it only when
    that writer is missing or fails, and then the user is told so."""
    try:
        return replace_atomically(target, lambda tmp: iio.imwrite(tmp, frames, fps=fps))
    except Exception as err:  # imageio-ffmpeg not installed, or its binary cannot run here
        gif = target.with_suffix(".gif")
        print(f"notice: could not write MP4 ({err}); wrote a GIF instead: {gif}. "
              "Install imageio-ffmpeg for MP4 output.")
        return replace_atomically(gif, lambda tmp: iio.imwrite(tmp, frames, duration=1000 / fps, loop=0))
