"""Correctness on CUDA: the fast hash grids against the torch reference (forward and backward),
the CUDA-only tests, and the fp16 / memory-bounded query caches against the exact path (same
scale, same peak pixel). Dry run: the same checks on CPU at toy sizes (torch backend only)."""
from __future__ import annotations

import subprocess
import sys

import torch

from bench_hashgrid import compare_grads
from gpu_parts.context import REPO, Context, tiny_run
from gpu_parts.hashgrid import GRIDS, TOY
from lerf.fields.hashgrid import HashGrid, resolve_hashgrid_backend

PROMPTS = ("red mug", "yellow banana", "blue teapot")


def hashgrid_checks(ctx: Context) -> dict:
    """Max output / table-gradient differences of every fast backend vs torch on one table."""
    out = {}
    for name, config in ({"toy": TOY} if ctx.dry_run else GRIDS).items():
        x = torch.rand(ctx.size(2**16, 256), 3, device=ctx.device)
        reference = HashGrid(**config, backend="torch").to(ctx.device)
        with torch.no_grad():
            reference.table.normal_()  # O(1) values, so that a wrong row or weight shows
        for backend in ("triton",) if not ctx.dry_run else ("torch",):
            try:
                resolve_hashgrid_backend(backend, ctx.device)
            except RuntimeError as err:
                out[f"{name}/{backend}"] = {"skipped": str(err).splitlines()[0]}
                continue
            grid = HashGrid(**config, backend=backend).to(ctx.device)
            with torch.no_grad():
                grid.table.copy_(reference.table)
            diff = compare_grads(grid, reference, x)
            diff["ok"] = diff["max_abs_diff_output"] < 1e-3 and diff["max_abs_diff_table_grad"] < 1e-3
            out[f"{name}/{backend}"] = diff
    return out


def cuda_tests(ctx: Context) -> dict:
    """The tests that skip without CUDA (Triton / tcnn vs torch), run by pytest here."""
    if ctx.dry_run:
        return {"skipped": "dry run (CPU): the CUDA-only tests skip themselves"}
    cmd = [sys.executable, "-m", "pytest", "-q", "tests/test_hashgrid.py", "-k", "triton or tcnn"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    tail = done.stdout.strip().splitlines()[-1:] or [done.stderr[-300:]]
    return {"command": " ".join(cmd[1:]), "returncode": done.returncode, "summary": tail[0],
            "ok": done.returncode == 0}


def query_checks(ctx: Context) -> dict:
    """Cached (fp16 on CUDA) and memory-bounded caches vs query_exact on a tiny trained run."""
    from lerf.query.engine import QueryEngine
    from lerf.query.run import load_run

    loaded = load_run(tiny_run(ctx), str(ctx.device))
    cameras, cam = loaded.scene.cameras, loaded.scene.eval_idx[0]
    full = QueryEngine(loaded.model, loaded.text_encoder(), loaded.cfg.relevancy, chunk=4096)
    pixels = cameras.height * cameras.width
    bounded = QueryEngine(loaded.model, loaded.text_encoder(), loaded.cfg.relevancy, chunk=4096,
                          cache_budget_bytes=full.full_cache_bytes(pixels) // 3)
    rows = {}
    for prompt in PROMPTS:
        exact = full.query_exact(prompt, cameras, cam)
        for name, engine in (("cache_" + str(full.cache_dtype).split(".")[-1], full), ("bounded", bounded)):
            got = engine.query(prompt, cameras, cam)
            rows[f"{name}/{prompt}"] = {"same_scale": got.scale_idx == exact.scale_idx,
                                        "same_peak": got.peak() == exact.peak(),
                                        "max_abs_diff_chosen_map": float((got.relevancy - exact.relevancy).abs().max())}
    return {"resolution": [cameras.width, cameras.height], "bounded_cache_mb": bounded.view(cameras, cam).cache_bytes
            / 2**20, "prompts": rows, "ok": all(r["same_scale"] and r["same_peak"] for r in rows.values())}


def run(ctx: Context) -> dict:
    result = {"hashgrid": hashgrid_checks(ctx), "cuda_tests": cuda_tests(ctx), "query": query_checks(ctx)}
    result["ok"] = all(v.get("ok", True) for v in result["hashgrid"].values()) and \
        result["cuda_tests"].get("ok", True) and result["query"]["ok"]
    return result
