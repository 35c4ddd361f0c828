"""Training steps/s and peak memory (torch.cuda.max_memory_allocated) per preset at 4096 rays,
after warm-up, on a generated demo scene the size of a LERF capture (200 views at 994x738). Each
preset runs in its own process through bench_train.py (its peak memory is its own); the first
one also generates the scene and its feature caches, which later presets reuse. Timing needs no
trained weights. Dry run: the demo preset on an 8-view 32x32 scene."""
from __future__ import annotations

import json
import subprocess
import sys
import time

from gpu_parts.context import REPO, Context


def run(ctx: Context) -> dict:
    presets = ctx.size(["default", "lite", "paper"], ["demo"])
    width, height, views = ctx.size((994, 738, 200), (32, 32, 8))
    steps, warmup, rays = ctx.size((50, 10, 4096), (2, 1, 256))
    caches = [f"scene.cache_dir={ctx.work / 'scenes'}", f"encoder.cache_dir={ctx.work / 'features'}",
              f"scene.num_views={views}"]
    out = {"scene": f"demo {views} views {width}x{height}", "rays_per_batch": rays, "steps": steps,
           "warmup": warmup, "presets": {}}
    for name in presets:
        cmd = [sys.executable, str(REPO / "benchmarks" / "bench_train.py"), "--steps", str(steps), "--warmup",
               str(warmup), "--rays", str(rays), "--width", str(width), "--height", str(height), "--device",
               ctx.device.type, "--override", *caches, "--presets", name, "--out", str(ctx.work / f"train_{name}.json")]
        start = time.perf_counter()
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        if done.returncode != 0:
            out["presets"][name] = {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
            continue
        row = json.loads((ctx.work / f"train_{name}.json").read_text())["presets"][name]
        row["process_s_incl_scene_and_caches"] = round(time.perf_counter() - start, 1)
        out["presets"][name] = row
        print(f"training {name}: {row}", flush=True)
    return out
