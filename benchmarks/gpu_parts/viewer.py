"""Render time of one 512 px wide frame (`LoadedRun.render`: RGB + depth, no language) of the
query part's trained run. Dry run: 32 px."""
from __future__ import annotations

from common import median
from gpu_parts.context import Context, timed, tiny_run


def run(ctx: Context) -> dict:
    from lerf.query.run import load_run

    chunk = ctx.size(1 << 16, 1024)
    loaded = load_run(tiny_run(ctx), str(ctx.device), chunk)
    cameras = loaded.scene.cameras
    width = ctx.size(512, 32)
    height = round(width * cameras.height / cameras.width)
    one = cameras.subset([0]).resized(width, height)
    loaded.render(one)  # warm-up (kernel compilation, allocator)
    times = timed(lambda: loaded.render(one), ctx.size(5, 2), ctx.device)
    return {"resolution": [width, height], "chunk": chunk, "median_ms": 1e3 * median(times),
            "all_ms": [round(1e3 * t, 2) for t in times]}
