"""New-prompt latency at 1440x1080: the memory-bounded cache (exact scale and peak; with and
without the chosen scale's full exact map) against the exact re-rendering path, with the cache's
memory. The model is a short training run of the default preset on the demo scene (or --run),
its first eval camera re-projected to 1440x1080. Dry run: the demo model, 64x48, a budget small
enough to force the bounded cache."""
from __future__ import annotations

import torch

from common import median
from gpu_parts.context import Context, timed, tiny_run

PROMPTS = ("red mug", "blue teapot", "yellow banana")


def run(ctx: Context) -> dict:
    from lerf.query.engine import QueryEngine
    from lerf.query.run import load_run

    loaded = load_run(tiny_run(ctx), str(ctx.device))
    cam = loaded.scene.eval_idx[0] if loaded.scene.eval_idx else 0
    width, height = ctx.size((1440, 1080), (64, 48))
    cameras = loaded.scene.cameras.subset([cam]).resized(width, height)
    engine = QueryEngine(loaded.model, loaded.text_encoder(), loaded.cfg.relevancy, chunk=ctx.size(1 << 16, 1024))
    if ctx.dry_run:
        engine.cache_budget_bytes = engine.full_cache_bytes(width * height) // 3
    engine.texts.embed(list(PROMPTS))  # text encoding is not what is measured
    if ctx.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    build_s = timed(lambda: engine.view(cameras, 0), 1, ctx.device)[0]
    view = engine.view(cameras, 0)
    rows = {}
    for prompt in PROMPTS[:ctx.size(2, 2)]:
        t_exact = timed(lambda: rows.setdefault("_exact", engine.query_exact(prompt, cameras, 0)), 1, ctx.device)[0]
        exact = rows.pop("_exact")
        row = {"exact_s": t_exact}
        for exact_map in (False, True):
            engine.exact_map = exact_map
            got = engine.query(prompt, cameras, 0)
            key = "cached_exact_map" if exact_map else "cached"
            row[f"{key}_s"] = median(timed(lambda: engine.query(prompt, cameras, 0), 3, ctx.device))
            row[f"{key}_same_scale_and_peak"] = (got.scale_idx, got.peak()) == (exact.scale_idx, exact.peak())
            row[f"{key}_recomputed_pairs"] = got.recomputed
        rows[prompt] = row
        print(f"query {prompt}: {row}", flush=True)
    return {"resolution": [width, height], "num_scales": len(engine.scales), "cache_build_s": build_s,
            "cache_kind": "bounded (low-rank)" if view.low_rank is not None else "full",
            "cache_rank": None if view.low_rank is None else view.low_rank.basis.shape[1],
            "cache_dtype": str(engine.cache_dtype), "cache_gb": view.cache_bytes / 2**30,
            "full_cache_would_be_gb": engine.full_cache_bytes(width * height) / 2**30,
            "peak_cuda_memory_gb": torch.cuda.max_memory_allocated() / 2**30 if ctx.device.type == "cuda" else None,
            "median_cached_ms": 1e3 * median([r["cached_s"] for r in rows.values()]),
            "median_cached_exact_map_ms": 1e3 * median([r["cached_exact_map_s"] for r in rows.values()]),
            "median_exact_s": median([r["exact_s"] for r in rows.values()]), "prompts": rows}
