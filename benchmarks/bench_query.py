"""New-prompt latency: cached query (one matrix product per prompt) vs the exact path
(re-render the view for each prompt), on a trained run, side by side in one process.

    python benchmarks/bench_query.py --run outputs/demo/<date>             # demo resolution, CPU
    python benchmarks/bench_query.py --run <run> --width 1440 --height 1080 --device cuda

The view is rendered once for the cache (its cost is reported separately as `cache_build_s`);
each prompt is then answered both ways, and the JSON records whether both paths chose the same
scale and the same peak pixel. With --width/--height the run's first eval camera is re-projected
to that resolution (intrinsics scaled).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch


sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's lerf, not an installed one
from common import machine, median, timed, write_json  # noqa: E402

from lerf.query.run import load_run  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True)
    p.add_argument("--prompts", nargs="+", default=["red mug", "blue teapot", "yellow banana", "green cactus"])
    p.add_argument("--width", type=int, default=0)
    p.add_argument("--height", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--chunk", type=int, default=8192)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--budget-gb", type=float, default=4.0, help="query cache budget per view (GiB)")
    p.add_argument("--out", default="benchmarks/results/query_cpu.json")
    args = p.parse_args()

    loaded = load_run(args.run, args.device)
    device = next(loaded.model.parameters()).device
    scene = loaded.scene
    cam = scene.eval_idx[0] if scene.eval_idx else 0
    cameras, view = scene.cameras, cam
    if args.width and args.height:
        cameras, view = scene.cameras.subset([cam]).resized(args.width, args.height), 0
    engine = loaded.engine(args.chunk)
    engine.cache_budget_bytes = int(args.budget_gb * 2**30)
    engine.texts.embed(args.prompts)  # text encoding is not what is measured
    build_s = timed(lambda: engine.view(cameras, view), 1, device)[0]
    rows = []
    for prompt in args.prompts:
        cached = engine.query(prompt, cameras, view)
        exact = []  # the exact path is timed once, on the call whose result is compared
        t_exact = timed(lambda: exact.append(engine.query_exact(prompt, cameras, view)), 1, device)[0]
        exact = exact[0]
        t_cached = median(timed(lambda: engine.query(prompt, cameras, view), args.repeats, device))
        rows.append({"prompt": prompt, "cached_s": t_cached, "exact_s": t_exact, "speedup": t_exact / t_cached,
                     "recomputed_pairs": cached.recomputed,
                     "same_scale": cached.scale_idx == exact.scale_idx, "same_peak": cached.peak() == exact.peak(),
                     "peak_distance_px": float(torch.tensor(cached.peak(), dtype=torch.float32).sub(
                         torch.tensor(exact.peak(), dtype=torch.float32)).norm()),
                     "max_abs_diff": float((cached.maps - exact.maps).abs().max())})
    result = {"benchmark": "query", "run": str(args.run), "resolution": [cameras.width, cameras.height],
              "num_scales": len(engine.scales), "cache_build_s": build_s, "cache_dtype": str(engine.cache_dtype),
              "cache_mb": engine.view(cameras, view).cache_bytes / 2**20,
              "cache_kind": "full" if engine.view(cameras, view).low_rank is None else "bounded (low-rank)",
              "full_cache_would_be_mb": engine.full_cache_bytes(cameras.width * cameras.height) / 2**20,
              "cache_budget_gb": args.budget_gb, "exact_map": engine.exact_map,
              "median_cached_s": median([r["cached_s"] for r in rows]),
              "median_exact_s": median([r["exact_s"] for r in rows]),
              "median_speedup": median([r["speedup"] for r in rows]), "prompts": rows, "machine": machine()}
    write_json(result, args.out)


if __name__ == "__main__":
    main()
