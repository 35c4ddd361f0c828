"""Hash grid forward and forward+backward: torch vs Triton (and tcnn when installed), at the
paper's language grid and the NeRF grid, 2^16 / 2^18 / 2^20 points (bench_hashgrid.measure)."""
from __future__ import annotations

import torch

from bench_hashgrid import measure, speedups
from gpu_parts.context import Context
from lerf.fields.hashgrid import HashGrid, resolve_hashgrid_backend

GRIDS = {  # LERF §4 language grid; nerfacto's NeRF grid
    "language": dict(num_levels=32, features_per_level=8, log2_hashmap_size=21, base_resolution=16,
                     max_resolution=512),
    "nerf": dict(num_levels=16, features_per_level=2, log2_hashmap_size=19, base_resolution=16, max_resolution=2048),
}
TOY = dict(num_levels=4, features_per_level=2, log2_hashmap_size=10, base_resolution=4, max_resolution=32)


def encoders(config: dict, device: torch.device) -> tuple[dict, dict]:
    """{backend: (module, parameter)} for every backend available on `device`, and the skipped ones."""
    found, skipped = {}, {}
    for backend in ("torch", "triton", "tcnn"):
        try:
            resolve_hashgrid_backend(backend, device)
        except RuntimeError as err:
            skipped[backend] = str(err).splitlines()[0]
            continue
        grid = HashGrid(**config, backend=backend).to(device)
        found[backend] = (grid, next(grid.parameters()))
    return found, skipped


def run(ctx: Context) -> dict:
    grids = {"toy": TOY} if ctx.dry_run else GRIDS
    points = ctx.size([2**16, 2**18, 2**20], [2**10])
    repeats = ctx.size(5, 2)
    out = {"grids": grids, "repeats": repeats, "statistic": "median ms", "results": {}}
    for name, config in grids.items():
        found, skipped = encoders(config, ctx.device)
        out.setdefault("skipped", skipped)
        for n in points:
            x = torch.rand(n, 3, device=ctx.device)
            times = measure(found, x, repeats)
            row = {b: {k: round(t[k], 3) for k in ("forward_ms", "forward_backward_ms")} for b, t in times.items()}
            for backend in (b for b in times if b != "torch"):
                row[f"{backend}_speedup_vs_torch"] = speedups(times["torch"], times[backend])
            out["results"][f"{name}/{n}"] = row
            print(f"hashgrid {name} {n} points: {row}", flush=True)
        del found
    return out
