"""Viewer speed on a trained run: the preview while the camera moves and the full frame once it
stops, through the same backend calls the viewer makes (no browser; encoding and transport to a
local browser are a few ms and not measured).

    python benchmarks/bench_viewer.py --run outputs/demo/<date>                       # CPU, demo run
    python benchmarks/bench_viewer.py --run <run> --full 512 --device cuda --out benchmarks/results/viewer_cuda.json

Measured, each on a camera the run has never rendered (a small orbit around the first held-out
view, as when a user drags): preview frames at --preview px (fps), full frames at --full px
(geometry only, as shown before any prompt), the first prompt on a still view (geometry plus the
language cache), and a further prompt on that cached view (one matrix product).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, median, timed, write_json  # noqa: E402

from lerf.viewer.backend import Backend  # noqa: E402
from lerf.viewer.camera import image_size, pinhole, pose_key, vertical_fov  # noqa: E402
from lerf.viewer.compose import frame_image  # noqa: E402


def orbit(c2w: np.ndarray, k: int, step_deg: float = 2.0) -> np.ndarray:
    """Camera `c2w` turned k·step degrees about the world z axis through the origin."""
    a = math.radians(step_deg * k)
    rot = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    return rot @ c2w


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--preview", type=int, default=64, help="preview frame height in px")
    p.add_argument("--full", type=int, default=128, help="full frame height in px")
    p.add_argument("--frames", type=int, default=10)
    p.add_argument("--chunk", type=int, default=8192)
    p.add_argument("--prompts", nargs="+", default=["red mug", "blue teapot"])
    p.add_argument("--out", default="benchmarks/results/viewer_cpu.json")
    args = p.parse_args()

    backend = Backend(args.run, args.device, args.chunk)
    device = next(backend.loaded.model.parameters()).device
    cams = backend.cameras
    view = backend.loaded.scene.eval_idx[0] if backend.loaded.scene.eval_idx else 0
    fov = vertical_fov(float(cams.fy_px[view]), cams.height)
    aspect = cams.width / cams.height
    base = cams.c2w[view].numpy().astype(np.float64)
    counter = iter(range(1, 10**6))

    def camera(height: int):
        c2w = orbit(base, next(counter))  # a new pose each call: nothing is served from a cache
        w, h = image_size(aspect, height)
        return pinhole(c2w, fov, w, h), pose_key(c2w, fov, w, h)

    def frame(height: int, language: bool):
        cameras, key = camera(height)
        geometry = backend.render(cameras, key, with_language=language)
        return cameras, key, geometry

    frame(args.preview, False)  # warm-up (allocations, lazy imports)
    preview = timed(lambda: frame_image(frame(args.preview, False)[2], "rgb", None, 0.5, 0.7), args.frames, device)
    full = timed(lambda: frame(args.full, False), max(3, args.frames // 3), device)
    result = {"benchmark": "viewer", "run": str(args.run), "preview_px": args.preview, "full_px": args.full,
              "preview_s": median(preview), "preview_fps": 1.0 / median(preview), "full_s": median(full)}
    if backend.engine is not None:
        backend.engine.texts.embed(args.prompts)  # text encoding is not what is measured
        t0 = time.perf_counter()
        cameras, key, _ = frame(args.full, True)
        first = backend.query(args.prompts[0], cameras, key)
        result["first_prompt_s"] = time.perf_counter() - t0
        result["next_prompt_s"] = median(timed(lambda: backend.query(args.prompts[-1], cameras, key), 5, device))
        result["first_prompt_scale_m"] = first.scale_m
    # The machine is shared: the load average says how many other processes competed for the cores.
    result["machine"] = machine() | {"load_avg_1m": os.getloadavg()[0]}
    write_json(result, args.out)


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
