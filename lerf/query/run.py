"""Open what training wrote (checkpoint, config, scene) for query, eval and the viewer — read-only.

The public Python API (docs/api.md): `lerf.load_run(dir)` returns a `LoadedRun`, whose `query`,
`render` and `points` answer what query.py and the viewer answer, through the same cached engine.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional, Sequence

import torch

from lerf.config import RelevancyConfig, TrainConfig
from lerf.data.cameras import Cameras
from lerf.data.scale_modes import ScaleRange
from lerf.data.scene import SceneData, load_scene
from lerf.encoders.factory import clip_encoder_for
from lerf.model import LerfModel
from lerf.model.checkpoint import load_checkpoint
from lerf.model.device import resolve_device
from lerf.model.render_view import render_view
from lerf.model.visibility import VISIBILITY_FILE, VisibilityGrid, build_visibility, load_visibility
from lerf.query.engine import QueryEngine, ViewRender
from lerf.query.points3d import PLY_THRESHOLD, RelevantPoints, relevant_points
from lerf.query.relevancy import QueryResult, scale_values, validate_prompt

log = logging.getLogger(__name__)

# A view: a scene frame by index, or one camera (e.g. `run.scene.cameras.subset([3]).within(512)`).
View = int | Cameras


@dataclass
class LoadedRun:
    """A trained run, read-only: its config, model and scene, and the questions one asks it."""

    run_dir: Path
    cfg: TrainConfig
    model: LerfModel
    scene: SceneData
    step: int
    scale_range: Optional[ScaleRange] = None  # the scales training supervised
    chunk: int = 4096  # rays per rendering batch
    _visibility: Optional[VisibilityGrid] = field(default=None, repr=False)
    _engine: Optional[QueryEngine] = field(default=None, repr=False)

    def text_encoder(self):
        """The CLIP encoder the run was supervised with (text side only is used)."""
        return clip_encoder_for(self.cfg, self.scene, next(self.model.parameters()).device)

    def visibility(self, chunk: Optional[int] = None) -> VisibilityGrid:
        """The grid training stored; built in memory (never written into the run) when missing."""
        if self._visibility is not None:
            return self._visibility
        grid = load_visibility(self.run_dir, self.cfg.relevancy.visibility_min_views)
        if grid is None:
            log.info("%s has no %s (training did not finish?): building the visibility grid in memory",
                     self.run_dir, VISIBILITY_FILE)
            grid = build_visibility(self.model, self.scene.cameras, list(self.scene.train_idx), self.cfg.relevancy,
                                    chunk or self.chunk)
        self._visibility = grid
        return grid

    def engine(self, chunk: Optional[int] = None) -> QueryEngine:
        """The run's cached query engine (model, text encoder, visibility grid), built on first use;
        asking for another `chunk` builds a new one."""
        chunk = chunk or self.chunk
        if self._engine is None or self._engine.chunk != chunk:
            warn_scale_range(self.cfg.relevancy, self.scale_range)
            visibility = self.visibility(chunk) if self.cfg.relevancy.visibility_filter else None
            self._engine = QueryEngine(self.model, self.text_encoder(), self.cfg.relevancy, chunk,
                                       visibility=visibility)
        return self._engine

    # -- the public API (docs/api.md) -----------------------------------------------------------
    @property
    def scales_m(self) -> list[float]:
        """The physical scales a query searches (relevancy.scale_min_m .. scale_max_m)."""
        return scale_values(self.cfg.relevancy).tolist()  # no engine (nor visibility grid) needed

    def _camera(self, view: View, key: object) -> tuple[Cameras, int, object]:
        """(cameras, index, cache key) of a view; a camera's key is its content unless given."""
        if isinstance(view, Cameras):
            if len(view) != 1:
                raise ValueError(f"a view is one camera, got {len(view)}: pick one with cameras.subset([i])")
            return view, 0, key if key is not None else ("camera", camera_digest(view))
        frames = len(self.scene.frame_names)
        if isinstance(view, bool) or not isinstance(view, int) or not 0 <= view < frames:
            raise ValueError(f"view {view!r} is not a frame of this scene (0..{frames - 1}) or a Cameras")
        return self.scene.cameras, view, key if key is not None else view

    def render(self, view: View, language: bool = False, key: object = None) -> ViewRender:
        """RGB [h, w, 3], camera-z depth in metres and accumulation of a view. `language`: also
        render the view's prompt-independent language factors into the engine's cache, so that
        queries on it cost one matrix product (what `query` does on first use)."""
        cameras, index, key = self._camera(view, key)
        if language:
            return self.engine().view(cameras, index, key)
        r = render_view(self.model, cameras, index, self.chunk)
        return ViewRender(r["rgb"], r["depth_m"], r["accumulation"])

    def query(self, prompt: str, view: View, scale_m: Optional[float] = None, key: object = None) -> QueryResult:
        """Relevancy of `prompt` on a view: `.maps` at every searched scale, the chosen scale
        (`.scale_m`, searched as LERF §3.4 unless `scale_m` fixes the nearest searched one),
        its map `.relevancy` [h, w] and `.peak()` (x, y). Views are rendered once and cached."""
        cameras, index, key = self._camera(view, key)
        result = self.engine().query(prompt, cameras, index, key)
        if scale_m is None:
            return result
        scales = self.engine().scales
        idx = int((scales - scale_m).abs().argmin())
        return QueryResult(result.prompt, result.maps, idx, float(scales[idx]))

    def points(self, prompt: str, views: Sequence[int] | str = "eval", threshold: float = PLY_THRESHOLD,
               world: bool = True) -> RelevantPoints:
        """Surface points of `views` (frame indices, or eval | train | all) whose relevancy exceeds
        `threshold`, kept where enough training views saw them: what `query.py ply=true` writes.
        `world`: in the frame and units of the scene's poses (else the normalised frame)."""
        views = select_views(views, self.scene) if isinstance(views, str) else list(views)
        found = relevant_points(self.engine(), self.scene.cameras, validate_prompt(prompt), views,
                                self.visibility(), threshold)
        return replace(found, points=self.scene.to_world(found.points)) if world else found

    def set_canonical_phrases(self, phrases: list[str]) -> None:
        """Replace the negatives of the pairwise softmax (LERF §3.4); cached views stay valid."""
        engine = self.engine()
        engine.texts.canon = engine.texts.embed([validate_prompt(p) for p in phrases])


def camera_digest(cameras: Cameras) -> str:
    """A name for a camera's content (pose, intrinsics, size): equal cameras share cached views."""
    h = hashlib.sha1(f"{cameras.width}x{cameras.height}".encode())
    for t in (cameras.c2w, cameras.fx_px, cameras.fy_px, cameras.cx_px, cameras.cy_px, cameras.distortion):
        h.update(t.detach().to("cpu", torch.float64).numpy().tobytes())
    return h.hexdigest()


def load_run(run_dir: str | Path, device: str = "auto", chunk: int = 4096) -> LoadedRun:
    """Rebuild the model from a run's checkpoint alone (its config and geometry are stored inside).

    The public entry of the Python API (`lerf.load_run`): `device` auto | cpu | cuda[:i];
    `chunk` rays per rendering batch."""
    run_dir = Path(run_dir)
    dev = resolve_device(device)
    ckpt = load_checkpoint(run_dir, map_location=dev)
    # Reading a run must never write into it or regenerate data behind the user's back.
    scene = load_scene(ckpt.config.scene, generate=False)
    scene.cameras = ckpt.fitted_cameras(scene.cameras)  # pose-refined training views, when refined
    model = ckpt.build_model(dev)
    log.info("loaded %s (step %d)", run_dir, ckpt.step)
    return LoadedRun(run_dir, ckpt.config, model, scene, ckpt.step, ckpt.scale_range, chunk)


def warn_scale_range(cfg: RelevancyConfig, trained: Optional[ScaleRange]) -> bool:
    """Warn (and return True) when the searched scales miss every scale training saw — e.g.
    poses in non-metric units without scene.metres_per_unit. Both are in the run's scale unit."""
    if trained is None or (cfg.scale_min_m <= trained.high and trained.low <= cfg.scale_max_m):
        return False
    log.warning("the query searches scales %.3g-%.3g but training supervised %.3g-%.3g (%s): relevancy will be "
                "meaningless; are the poses metric? (set scene.metres_per_unit)", cfg.scale_min_m,
                cfg.scale_max_m, trained.low, trained.high, trained.unit)
    return True


def select_views(spec: str, scene: SceneData) -> list[int]:
    """Frame indices named by a `views=` argument: eval (held-out; the first training view when
    there are none), train, all, or comma-separated indices."""
    if spec == "eval":
        return list(scene.eval_idx) or list(scene.train_idx[:1])
    if spec == "train":
        return list(scene.train_idx)
    if spec == "all":
        return list(range(len(scene.frame_names)))
    try:
        views = [int(v) for v in str(spec).split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"views must be eval|train|all or comma-separated indices, got '{spec}'") from None
    bad = [v for v in views if not 0 <= v < len(scene.frame_names)]
    if bad or not views:
        raise ValueError(f"views {bad or spec} out of range: the scene has frames 0..{len(scene.frame_names) - 1}")
    return views
