"""Hash grid speed: our backends vs nerfstudio's pure-torch HashEncoding, side by side.

    python benchmarks/bench_hashgrid.py                       # CPU, 2**16 points -> results/hashgrid_cpu.json
    python benchmarks/bench_hashgrid.py --out benchmarks/results/hashgrid_cuda.json   # on a GPU machine

Same hyper-parameters for everyone (16 levels x 2 features, 2**19 rows per level, resolution
16..2048). Before timing, nerfstudio's table is copied into ours and both encodings are checked to
give the same output and the same table gradient. On CUDA the triton and tcnn backends are timed
too (tcnn aligns its grid differently, so it is timed but not value-checked).

Needs nerfstudio (benchmark-only; see benchmarks/requirements.txt for the minimal install).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
import types
from pathlib import Path

import torch

from lerf.fields.hashgrid import HashGrid, resolve_hashgrid_backend
from lerf.fields.hashgrid_layout import HASH_PRIMES, LevelLayout

CONFIG = dict(num_levels=16, features_per_level=2, log2_hashmap_size=19, base_resolution=16, max_resolution=2048)


def import_nerfstudio_hash_encoding():
    """nerfstudio's HashEncoding class, or exit with install instructions."""
    if importlib.util.find_spec("nerfstudio") is None:
        sys.exit("bench_hashgrid: nerfstudio is not installed. Install the benchmark deps with\n"
                 "  pip install --no-deps nerfstudio==1.1.5 && pip install -r benchmarks/requirements.txt")
    if "viser" not in sys.modules and importlib.util.find_spec("viser") is None:
        # Only reached through nerfstudio.utils.math -> data.scene_box; HashEncoding never uses it.
        stub = types.ModuleType("viser")
        stub.transforms = types.ModuleType("viser.transforms")
        sys.modules.update({"viser": stub, "viser.transforms": stub.transforms})
    try:
        from nerfstudio.field_components.encodings import HashEncoding
    except ImportError as err:
        sys.exit(f"bench_hashgrid: importing nerfstudio's encodings failed ({err}); "
                 "see benchmarks/requirements.txt")
    return HashEncoding


def nerfstudio_rows(layout: LevelLayout, log2_hashmap_size: int) -> torch.Tensor:
    """For each row of our table, the row of nerfstudio's table that holds the same vertex.

    nerfstudio hashes every level into its own 2**log2 block; we index the coarse levels densely
    (x fastest). Hashed levels use the same hash, so their rows map one to one.
    """
    block = 2**log2_hashmap_size
    parts = []
    for level, (res, size, hashed) in enumerate(zip(layout.resolution, layout.table_size, layout.hashed)):
        if hashed:
            parts.append(level * block + torch.arange(size))
            continue
        v = torch.arange(res + 1)
        vz, vy, vx = torch.meshgrid(v, v, v, indexing="ij")  # our dense row = x + y*(r+1) + z*(r+1)^2
        h = (vx * HASH_PRIMES[0]) ^ (vy * HASH_PRIMES[1]) ^ (vz * HASH_PRIMES[2])
        parts.append(level * block + (h % block).reshape(-1))
    return torch.cat(parts)


def check_same_function(ours: HashGrid, theirs, rows: torch.Tensor, x: torch.Tensor) -> dict:
    """Copy nerfstudio's table into ours; compare outputs and table gradients."""
    with torch.no_grad():
        theirs.hash_table.normal_()  # O(1) values, so that a wrong row or weight is visible
        ours.table.copy_(theirs.hash_table[rows])
    upstream = torch.randn(x.shape[0], ours.output_dim, generator=torch.Generator().manual_seed(0))
    outs = []
    for enc, param in ((ours, ours.table), (theirs, theirs.hash_table)):
        param.grad = None
        out = enc(x)
        (out * upstream).sum().backward()
        outs.append(out.detach())
    # Our rows that share a nerfstudio row (dense-level hash collisions there) add up.
    ours_grad_in_theirs = torch.zeros_like(theirs.hash_table).index_add_(0, rows, ours.table.grad)
    result = {"max_abs_diff_output": (outs[0] - outs[1]).abs().max().item(),
              "max_abs_diff_table_grad": (ours_grad_in_theirs - theirs.hash_table.grad).abs().max().item()}
    ok = result["max_abs_diff_output"] < 1e-4 and result["max_abs_diff_table_grad"] < 1e-3
    if not ok:
        sys.exit(f"bench_hashgrid: ours and nerfstudio disagree: {result}")
    return result


def measure(encoders: dict, x: torch.Tensor, repeats: int) -> dict:
    """Median forward and forward+backward times (ms) of each ``name -> (module, parameter)``.

    The encoders take turns within every repeat, so that load from other processes on a shared
    machine falls on all of them alike.
    """
    sync = torch.cuda.synchronize if x.device.type == "cuda" else (lambda: None)
    with torch.no_grad():  # one upstream gradient per output width (encoders may differ)
        upstream = {name: torch.randn(x.shape[0], module(x[:1]).shape[-1], device=x.device)
                    for name, (module, _) in encoders.items()}

    def forward(module, param):
        with torch.no_grad():
            module(x)

    def forward_backward(module, param):
        param.grad = None
        (module(x) * upstream[next(n for n, (m, _) in encoders.items() if m is module)]).sum().backward()

    times = {name: {"forward": [], "forward_backward": []} for name in encoders}
    for repeat in range(repeats + 1):  # the first round warms up and is not recorded
        for name, (module, param) in encoders.items():
            for kind, fn in (("forward", forward), ("forward_backward", forward_backward)):
                sync()
                start = time.perf_counter()
                fn(module, param)
                sync()
                if repeat:
                    times[name][kind].append(1e3 * (time.perf_counter() - start))
    return {name: {"forward_ms": statistics.median(t["forward"]),
                   "forward_backward_ms": statistics.median(t["forward_backward"]),
                   "forward_ms_all": [round(v, 2) for v in t["forward"]],
                   "forward_backward_ms_all": [round(v, 2) for v in t["forward_backward"]]}
            for name, t in times.items()}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def bench_cpu(points: int, repeats: int) -> dict:
    HashEncoding = import_nerfstudio_hash_encoding()
    torch.manual_seed(0)
    ours = HashGrid(**CONFIG, backend="torch")
    theirs = HashEncoding(num_levels=16, min_res=16, max_res=2048, log2_hashmap_size=19, features_per_level=2,
                          implementation="torch")
    # nerfstudio computes b**l in float32 and floors its top level to 2047; use our exact schedule
    # (1 vertex per axis more at one level: no change in cost) so the two compute one function.
    scalings_nerfstudio = [int(s) for s in theirs.scalings.tolist()]
    theirs.scalings = torch.tensor(ours.layout.resolution, dtype=torch.float32)
    x = torch.rand(points, 3, generator=torch.Generator().manual_seed(1))

    check = check_same_function(ours, theirs, nerfstudio_rows(ours.layout, 19), x)
    results = measure({"nerfstudio_torch": (theirs, theirs.hash_table), "ours_torch": (ours, ours.table)},
                      x, repeats)
    return {"check_vs_nerfstudio": check, "nerfstudio_scalings_as_shipped": scalings_nerfstudio,
            "results": results, "speedup_ours_vs_nerfstudio": speedups(results["nerfstudio_torch"],
                                                                       results["ours_torch"])}


def speedups(baseline: dict, candidate: dict) -> dict:
    """How many times faster ``candidate`` is, two ways.

    ``paired_median``: the median over repeats of the ratio of the two runs made back to back --
    robust when other processes load a shared machine part of the time (the headline number).
    ``ratio_of_medians``: the plain ratio of the two medians.
    """
    out = {}
    for kind in ("forward", "forward_backward"):
        pairs = zip(baseline[f"{kind}_ms_all"], candidate[f"{kind}_ms_all"])
        out[kind] = {"paired_median": statistics.median(b / c for b, c in pairs),
                     "ratio_of_medians": baseline[f"{kind}_ms"] / candidate[f"{kind}_ms"]}
    return out


def bench_cuda(points: int, repeats: int, device: torch.device = torch.device("cuda")) -> dict:
    """Every CUDA backend present vs our torch backend on the GPU."""
    x = torch.rand(points, 3, device=device)
    reference = HashGrid(**CONFIG, backend="torch").to(device)
    with torch.no_grad():
        reference.table.normal_()  # O(1) values, so that a wrong row or weight is visible
    encoders, skipped, checks = {"torch": (reference, reference.table)}, {}, {}
    for backend in ("triton", "tcnn"):
        try:
            resolve_hashgrid_backend(backend, device)
        except RuntimeError as err:
            skipped[backend] = str(err)
            continue
        grid = HashGrid(**CONFIG, backend=backend).to(device)
        encoders[backend] = (grid, next(grid.parameters()))
        if backend == "triton":  # same table layout as torch: must compute the same function
            with torch.no_grad():
                grid.table.copy_(reference.table)
            checks["triton_vs_torch"] = compare_grads(grid, reference, x)
    results = measure(encoders, x, repeats)
    speedup = {f"{b}_vs_torch": speedups(results["torch"], r) for b, r in results.items() if b != "torch"}
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return {"device_name": name, "checks": checks, "skipped": skipped,
            "results": results, "speedup": speedup}


def compare_grads(a: HashGrid, b: HashGrid, x: torch.Tensor) -> dict:
    """Max abs differences of outputs and table gradients of two grids that share a table layout."""
    upstream = torch.randn(x.shape[0], a.output_dim, device=x.device)
    outs = []
    for grid in (a, b):
        grid.table.grad = None
        out = grid(x)
        (out * upstream).sum().backward()
        outs.append(out.detach())
    return {"max_abs_diff_output": (outs[0] - outs[1]).abs().max().item(),
            "max_abs_diff_table_grad": (a.table.grad - b.table.grad).abs().max().item()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=2**16)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, nargs="+", default=[torch.get_num_threads(), 1],
                        help="torch intra-op thread counts to run the CPU comparison with (default: torch's, 1)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/hashgrid_cpu.json"))
    args = parser.parse_args()

    report = {"config": CONFIG, "points": args.points, "repeats": args.repeats, "statistic": "median",
              "torch_version": torch.__version__, "python": platform.python_version(),
              "cpu": cpu_name(), "cpu_count": os.cpu_count(), "cpu_runs": []}
    for threads in dict.fromkeys(args.threads):  # unique, in order
        torch.set_num_threads(threads)
        load_before = os.getloadavg()[0]
        run = {"torch_threads": threads, **bench_cpu(args.points, args.repeats)}
        # others' processes on a shared machine slow both sides; the 1-minute load average says how much
        run["load_average_1min_before_after"] = [load_before, os.getloadavg()[0]]
        report["cpu_runs"].append(run)
        times = {k: {n: round(v, 1) for n, v in r.items() if n.endswith("_ms")} for k, r in run["results"].items()}
        print(json.dumps({"torch_threads": threads, "ms": times, "speedup": run["speedup_ours_vs_nerfstudio"],
                          "check": run["check_vs_nerfstudio"], "load": run["load_average_1min_before_after"]}))
    if torch.cuda.is_available():
        report["cuda_bench"] = bench_cuda(args.points, args.repeats)
        print(json.dumps({"cuda_speedup": report["cuda_bench"]["speedup"]}))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
