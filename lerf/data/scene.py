"""A scene ready for training: images, normalised cameras, the train/eval split and its scale.

Normalisation moves and scales the world so every camera lies in [-1, 1]^3. The scale factor is
kept (`scale_factor`: normalised units per world unit) so that physical sizes can be recovered —
the language field's scale is in world units (metres for the LERF captures and the demo scene).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
import importlib
from typing import Any, Optional

import imageio.v3 as iio
import numpy as np
import torch
from jaxtyping import Float, Int, UInt8
from torch import Tensor

from lerf.config import SceneConfig
from lerf.data.cameras import Cameras
from lerf.data.colmap import read_colmap
from lerf.data.nerfstudio import RawScene, SceneFormatError, _read_json, read_nerfstudio

log = logging.getLogger(__name__)


@dataclass
class SceneData:
    root: Path
    frame_names: list[str]
    images: UInt8[Tensor, "n h w 3"]
    cameras: Cameras  # normalised frame
    train_idx: list[int]
    eval_idx: list[int]
    center_world: Float[Tensor, "3"]
    scale_factor: float  # normalised units per world unit
    background: Optional[Float[Tensor, "3"]]
    object_ids: Optional[Int[Tensor, "n h w"]] = None  # demo scene only
    labels: Optional[dict[int, str]] = None  # object id -> name, demo scene only
    labels_dir: Optional[Path] = None  # LabelMe-style eval labels, when the scene has them
    # The demo scene's ground truth (a lerf.demo.truth.DemoTruth, what the instrument reads), attached
    # by the demo's loader; None otherwise. Not typed here: the core does not import the demo package.
    demo: Optional[Any] = None

    def to_world(self, points: Float[Tensor, "n 3"]) -> Float[Tensor, "n 3"]:
        """Normalised scene positions back to the frame and units of transforms.json."""
        return points / self.scale_factor + self.center_world

    @property
    def height(self) -> int:
        return self.cameras.height

    @property
    def width(self) -> int:
        return self.cameras.width

    def image_float(self, idx: Tensor | int) -> Float[Tensor, "... h w 3"]:
        return self.images[idx].float() / 255.0


def split_indices(n: int, eval_every: int) -> tuple[list[int], list[int]]:
    """Frame i is held out when i % eval_every == 0 (nerfstudio's interval split).

    Example: n = 10, eval_every = 8 -> train [1..7, 9], eval [0, 8].
    """
    if eval_every <= 0:
        return list(range(n)), []
    eval_idx = [i for i in range(n) if i % eval_every == 0]
    train_idx = [i for i in range(n) if i % eval_every != 0]
    if not train_idx:
        raise SceneFormatError(f"eval_every={eval_every} leaves no training frame among {n}")
    return train_idx, eval_idx


def focus_point(c2w: Float[Tensor, "n 3 4"]) -> Float[Tensor, "3"]:
    """The point nearest (least squares) to every camera's optical axis."""
    origins = c2w[:, :, 3].double()
    axes = -c2w[:, :, 2].double()
    axes = axes / axes.norm(dim=-1, keepdim=True)
    proj = torch.eye(3, dtype=torch.float64) - axes[:, :, None] * axes[:, None, :]
    a = proj.sum(0)
    b = (proj @ origins[:, :, None]).sum(0)
    return torch.linalg.lstsq(a, b).solution[:, 0].float()


def normalise_cameras(cameras: Cameras, center: str) -> tuple[Cameras, Tensor, float]:
    """Centre and scale so that all camera positions lie in [-1, 1]^3."""
    positions = cameras.c2w[:, :, 3]
    if center == "poses":
        c = positions.mean(0)
    elif center == "focus":
        c = focus_point(cameras.c2w)
    elif center == "none":
        c = torch.zeros(3)
    else:
        raise ValueError(f"scene.center must be one of poses|focus|none, got '{center}'")
    extent = float((positions - c).abs().max())
    scale = 1.0 / extent if extent > 0 else 1.0
    c2w = cameras.c2w.clone()
    c2w[:, :, 3] = (positions - c) * scale
    out = Cameras(c2w, cameras.fx_px, cameras.fy_px, cameras.cx_px, cameras.cy_px, cameras.width,
                  cameras.height, cameras.distortion)
    return out, c, scale


def load_id_maps(raw: RawScene, key: str) -> Optional[Tensor]:
    """Per-frame integer id masks (the demo's object ids or part ids, `key` "ids" or "parts"),
    each checked to exist, read and match its image."""
    paths = raw.extras.get(key, [])
    if not paths or any(p is None for p in paths):
        return None
    ids = []
    for name, rel in zip(raw.frame_names, paths):
        path, where = raw.root / rel, f"{raw.root / 'transforms.json'}: frame '{name}'"
        if not path.is_file():
            raise SceneFormatError(f"{where}: id mask {path} (mask_id_path) not found")
        try:
            mask = np.asarray(iio.imread(path))
        except Exception as err:  # noqa: BLE001 - each image library raises its own types
            raise SceneFormatError(f"{where}: cannot read id mask {path} ({type(err).__name__}: {err})") from None
        if mask.ndim != 2 or mask.dtype.kind not in "ui" or mask.shape != tuple(raw.images.shape[1:3]):
            raise SceneFormatError(f"{where}: id mask {path} is {mask.dtype} {mask.shape}; expected one integer "
                                   f"channel of the image's size {tuple(raw.images.shape[1:3])}")
        ids.append(torch.from_numpy(mask.astype(np.int64)))
    return torch.stack(ids)


def _load_labels(root: Path) -> tuple[Optional[dict[int, str]], Optional[dict]]:
    path = root / "labels.json"
    if not path.is_file():
        return None, None
    data = _read_json(path)
    return {int(k): str(v) for k, v in data.get("objects", {}).items()}, data.get("hierarchy")


def why_missing(path: str) -> str:
    if not Path(path).expanduser().is_absolute():  # runs trained before paths were stored absolute
        return (f"scene.cache_dir '{path}' is relative to the directory training ran in; run from there, "
                "or deleted since training?")
    return "deleted since training?"


def demo_loader():
    """The demo instrument's loader (lerf/demo/loader.py). scene.kind=demo names it; it is looked up
    by name when a config asks for it, so the core packages do not depend on lerf.demo (the demo
    builds on them, not the other way round)."""
    return importlib.import_module("lerf.demo.loader")


def scene_root(cfg: SceneConfig, generate: bool = True) -> Path:
    """Where the scene's files are; generates the demo scene (and its capture-noise copy, with
    scene.capture_noise) on first use when `generate`."""
    if cfg.kind == "demo":
        return demo_loader().demo_scene_root(cfg, generate)
    if cfg.capture_noise:
        raise SceneFormatError(f"scene '{cfg.name}': scene.capture_noise adds synthetic noise to the demo scene only "
                               "(scene.kind=demo); a real capture brings its own")
    if cfg.kind == "nerfstudio":
        path = _capture_path(cfg, "a folder with transforms.json (for the LERF presets, set LERF_DATA_ROOT)")
        if not (path / "transforms.json").is_file():
            raise SceneFormatError(
                f"scene '{cfg.name}': {path / 'transforms.json'} not found. Download the capture (LERF data set: "
                "https://drive.google.com/drive/folders/1vh0mSl7v29yaGsxleadcj-LCZOE_WEWB) and unpack it so that "
                f"{path}/transforms.json exists, or set scene.path / LERF_DATA_ROOT")
        return path
    if cfg.kind == "colmap":
        return _capture_path(cfg, "a COLMAP folder with images/ and sparse/0/ (for scene=lerf_ovs, set LERF_OVS_ROOT)")
    raise ValueError(f"scene.kind must be 'demo', 'nerfstudio' or 'colmap', got '{cfg.kind}'")


def _capture_path(cfg: SceneConfig, what: str) -> Path:
    if not cfg.path:
        raise SceneFormatError(f"scene '{cfg.name}': scene.path is not set; point it at {what}")
    return Path(cfg.path).expanduser()


def _read_raw(cfg: SceneConfig, root: Path) -> RawScene:
    if cfg.kind == "colmap":
        return read_colmap(root, downscale=cfg.downscale, background=cfg.background_color)
    return read_nerfstudio(root, downscale=cfg.downscale, background=cfg.background_color)


def _labels_dir(cfg: SceneConfig, root: Path) -> Optional[Path]:
    """scene.labels_dir when set, else the scene's own labels/ folder if any. A labels_dir that is
    missing (a preset's default, e.g. lerf_ovs without its label/ folder) only turns the label
    evaluation off: training needs no labels."""
    if cfg.labels_dir:
        path = Path(cfg.labels_dir).expanduser()
        if path.is_dir():
            return path
        log.warning("scene '%s': scene.labels_dir %s not found; no label evaluation for this scene", cfg.name, path)
        return None
    return root / "labels" if (root / "labels").is_dir() else None


def load_scene(cfg: SceneConfig, generate: bool = True) -> SceneData:
    root = scene_root(cfg, generate)
    raw = _read_raw(cfg, root)
    cameras, center, scale = normalise_cameras(raw.cameras, cfg.center)
    train_idx, eval_idx = split_indices(len(raw.frame_names), cfg.eval_every)
    bg = cfg.background_color if cfg.background_color is not None else raw.background_color
    background = torch.tensor(bg, dtype=torch.float32) if bg is not None else None
    labels_dir = _labels_dir(cfg, root)
    labels, hier = _load_labels(root)
    log.info("scene %s: %d frames (%d train, %d eval), %dx%d, scale factor %.4f", cfg.name, len(raw.frame_names),
             len(train_idx), len(eval_idx), cameras.width, cameras.height, scale)
    return SceneData(root=root, frame_names=raw.frame_names, images=raw.images, cameras=cameras,
                     train_idx=train_idx, eval_idx=eval_idx, center_world=center, scale_factor=scale,
                     background=background, object_ids=load_id_maps(raw, "ids"), labels=labels,
                     labels_dir=labels_dir,
                     demo=None if hier is None else demo_loader().demo_truth(raw, hier))

