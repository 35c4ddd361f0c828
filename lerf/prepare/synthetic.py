"""A capture with known cameras for checking prepare end to end: the demo scene rendered with a
speckled table top, plus a nerfstudio transforms.json holding the true poses.

Why the speckle: the stock demo table's wood grain is smooth (5 % brightness noise of 8 cm
period) and its objects are flat-shaded, so SIFT finds only ~150 keypoints in a 512 px view and
COLMAP registers 2 of 32 views (measured, docs/prepare.md). Real tables, floors and desks carry
texture; 40 % brightness noise of 1 cm period on the wood stands in for it. Everything else is
the demo scene: layout, objects, lighting, the camera spiral.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from lerf.data.atomic import write_json
from lerf.demo.scene import (BACKGROUND_RGB, DemoScene, build_demo_scene, camera_poses,  # noqa: F401 (re-export)
                             generate_demo_scene, intrinsics, pixel_rays, render_view)

SPECKLE_AMP = 0.4  # brightness noise amplitude on the table (the stock wood: 0.05)
SPECKLE_PERIOD_M = 0.01  # its feature size: 2-10 px at 512 px over the demo's 0.55-1.25 m cameras


def speckled_scene(seed: int) -> DemoScene:
    """The demo scene for `seed` with the speckled table top (objects[0] is the table)."""
    scene = build_demo_scene(seed)
    table = scene.objects[0]
    prims = tuple(dataclasses.replace(p, texture=dataclasses.replace(
        p.texture, noise_amp=SPECKLE_AMP, noise_period=SPECKLE_PERIOD_M)) for p in table.primitives)
    return dataclasses.replace(scene, objects=(dataclasses.replace(table, primitives=prims),) + scene.objects[1:])


def render_capture(out_dir: Path, num_views: int, size: int, seed: int = 0, supersample: int = 1,
                   speckle: bool = True, progress: bool = False) -> Path:
    """images/frame_XXXXX.png and transforms.json (true OpenGL c2w, metres) of `num_views` square
    views of `size` pixels, on the demo's camera spiral; `speckle=False` keeps the stock table."""
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    scene = speckled_scene(seed) if speckle else build_demo_scene(seed)
    rays = pixel_rays(size, size, supersample)
    fx, fy, cx, cy = intrinsics(size, size)
    frames = []
    for k, c2w in enumerate(tqdm(camera_poses(num_views), desc="render demo views", disable=not progress)):
        name = f"images/frame_{k + 1:05d}.png"
        Image.fromarray(render_view(scene, c2w, rays).rgb).save(out_dir / name)
        frames.append({"file_path": name, "transform_matrix": c2w.tolist()})
    write_json(out_dir / "transforms.json", {
        "camera_model": "PINHOLE", "fl_x": fx, "fl_y": fy, "cx": cx, "cy": cy, "w": size, "h": size,
        "background_color": list(BACKGROUND_RGB), "scene_units": "metres", "frames": frames})
    return out_dir
