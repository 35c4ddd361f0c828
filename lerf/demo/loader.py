"""The demo scene as the scene loader sees it (scene.kind=demo): where its files are (generated on
first use, with the capture-noise copy when scene.capture_noise) and the ground truth that the
loader attaches to `SceneData.demo`. lerf/data/scene.py looks this module up by name when a
config picks the demo."""
from __future__ import annotations

from pathlib import Path

from lerf.config import SceneConfig
from lerf.data.nerfstudio import RawScene, SceneFormatError
from lerf.data.scene import load_id_maps, why_missing
from lerf.demo.capture_noise import ensure_noisy_scene
from lerf.demo.scene import demo_scene_dir, ensure_demo_scene
from lerf.demo.truth import DemoTruth, load_depth_z


def _clean_root(cfg: SceneConfig, generate: bool) -> Path:
    if not generate:
        path = demo_scene_dir(Path(cfg.cache_dir).expanduser(), cfg.seed, cfg.num_views, cfg.width, cfg.height)
        if not (path / "transforms.json").is_file():
            raise SceneFormatError(
                f"demo scene cache {path.resolve()} is missing ({why_missing(cfg.cache_dir)}). Regenerate it with "
                f"`python -m lerf.demo.scene {path} --seed {cfg.seed} --views {cfg.num_views} "
                f"--width {cfg.width} --height {cfg.height}`")
        return path
    return ensure_demo_scene(Path(cfg.cache_dir).expanduser(), seed=cfg.seed, num_views=cfg.num_views,
                             width=cfg.width, height=cfg.height)


def demo_scene_root(cfg: SceneConfig, generate: bool) -> Path:
    """The demo scene's folder, or its capture-noise copy with scene.capture_noise; generated on
    first use when `generate` (a query of a trained run never regenerates: it says what is missing)."""
    path = _clean_root(cfg, generate)
    return ensure_noisy_scene(path, cfg.seed, cfg.eval_every, generate) if cfg.capture_noise else path


def demo_truth(raw: RawScene, hierarchy: dict) -> DemoTruth:
    """Part ids, depths and the hierarchy of a scene whose labels.json has a hierarchy (only the
    demo scene writes one)."""
    return DemoTruth(part_ids=load_id_maps(raw, "parts"), depth_z_m=load_depth_z(raw, raw.cameras),
                     hierarchy=hierarchy)
