"""The viewer's one door into the rest of lerf: open a run, render a camera, answer prompts, find
3D points, save maps. Every other viewer module imports project code only through this one, so a
reorganisation of lerf's query modules touches a single file here.

Everything goes through the public Python API (`lerf.load_run`, docs/api.md), as query.py does:
`render` for geometry alone or with the language factors cached (a new prompt on a rendered
view is one matrix product, the geometry is not rendered again), `query`, `points` for the 3D
query, and `save_query` for files.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from jaxtyping import Float
from torch import Tensor

from lerf.data.cameras import Cameras
from lerf.query.engine import ViewRender
from lerf.query.images import colorize, to_uint8
from lerf.query.outputs import QueryInUseError, prompt_dirname, prompt_folders_locked, save_query
from lerf.query.points3d import PLY_THRESHOLD, RelevantPoints
from lerf.query.relevancy import QueryResult, validate_prompt
from lerf.query.run import load_run

__all__ = ["Backend", "Cameras", "Geometry", "QueryInUseError", "QueryResult", "RelevantPoints", "colorize", "to_uint8",
           "validate_prompt"]

NO_LANGUAGE = ("This run has no language field (it was trained with model.language.enabled=false), "
               "so prompts are off. RGB and depth still render.")


@dataclass
class Geometry:
    """What a camera sees, prompt aside."""

    rgb: Float[Tensor, "h w 3"]
    depth_m: Float[Tensor, "h w"]  # camera z, world units
    accumulation: Float[Tensor, "h w"]
    language: Optional[ViewRender] = None  # set when rendered through the query engine


class Backend:
    """One trained run, shared by every browser tab. The model renders one view at a time (a lock),
    so tabs take turns instead of oversubscribing the CPU or racing on the engine's cache."""

    def __init__(self, run_dir: str | Path, device: str = "auto", chunk: int = 8192):
        self.loaded = load_run(run_dir, device, chunk)
        self.chunk = chunk
        self.lock = threading.Lock()
        model = self.loaded.model
        self.engine = None if model.language is None else self.loaded.engine()
        self.language_off_reason = NO_LANGUAGE if self.engine is None else None

    # -- the run --------------------------------------------------------------------------------
    @property
    def cameras(self) -> Cameras:
        return self.loaded.scene.cameras

    @property
    def scales_m(self) -> list[float]:
        return self.loaded.scales_m if self.engine is not None else []

    @property
    def canonical_phrases(self) -> list[str]:
        return list(self.loaded.cfg.relevancy.canonical_phrases)

    def views(self) -> dict[str, int]:
        """Dataset views by label, held-out ones first: 'held-out frame_00000' -> 0."""
        scene = self.loaded.scene
        name = [Path(f).stem for f in scene.frame_names]
        held = {f"held-out {name[i]}": i for i in scene.eval_idx}
        return held | {f"train {name[i]}": i for i in scene.train_idx}

    # -- rendering ------------------------------------------------------------------------------
    def render(self, cameras: Cameras, key: object, with_language: bool) -> Geometry:
        """Render camera 0 of `cameras`; with_language also caches the prompt-independent
        language factors under `key` (needs a language field)."""
        language = with_language and self.engine is not None
        with self.lock:
            view = self.loaded.render(cameras, language, key)
        return Geometry(view.rgb, view.depth_m, view.accumulation, view if language else None)

    def query(self, prompt: str, cameras: Cameras, key: object, scale_m: Optional[float] = None) -> QueryResult:
        """Relevancy of `prompt` on the cached view `key`; the scale is searched unless given."""
        with self.lock:
            return self.loaded.query(prompt, cameras, scale_m, key)

    def set_canonical_phrases(self, phrases: list[str]) -> None:
        """Replace the negatives of the pairwise softmax (LERF §3.4); cached views stay valid."""
        with self.lock:
            self.loaded.set_canonical_phrases(phrases)

    # -- 3D and files ---------------------------------------------------------------------------
    def relevant_points(self, prompt: str, views: str = "eval") -> RelevantPoints:
        """The points `query.py ply=true` writes for this prompt (same views, threshold, filter),
        in the normalised scene frame the viewer draws in."""
        with self.lock:
            return self.loaded.points(prompt, views, PLY_THRESHOLD, world=False)

    def save(self, results: list[QueryResult], geometry: Geometry, out_root: Optional[Path] = None) -> list[Path]:
        """Write the current view's maps with query.py's writer: <run>/queries/<prompt>/viewer_<time>*."""
        out_root = out_root or self.loaded.run_dir / "queries"
        now = time.time()  # milliseconds in the name: two saves never collide (nothing is overwritten)
        view = time.strftime("viewer_%Y%m%d-%H%M%S", time.localtime(now)) + f"-{int(now * 1000) % 1000:03d}"
        out_dirs = [out_root / prompt_dirname(result.prompt) for result in results]
        # The folders query.py writes into too: while it writes one, this save is refused (QueryInUseError).
        with prompt_folders_locked(out_dirs):
            for result, out_dir in zip(results, out_dirs):
                save_query(result, geometry.language, out_dir, view)
        return [out_dir / f"{view}.json" for out_dir in out_dirs]


def max_relevancy(results: list[QueryResult]) -> Optional[Float[Tensor, "h w"]]:
    """Several positives shown at once: each pixel takes its most relevant prompt."""
    if not results:
        return None
    return torch.stack([r.relevancy for r in results]).amax(0)
