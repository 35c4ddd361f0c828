"""Training throughput and peak memory per model preset, on the demo scene.

    python benchmarks/bench_train.py                                   # CPU, 128x128 demo scene
    python benchmarks/bench_train.py --width 1440 --height 1080 --device cuda --out benchmarks/results/train_cuda.json

Each preset runs in its own process (so peak memory is its own): build the scene, the cached
supervision and the model with the trainer's own `setup`, run warm-up steps, then time `--steps`
optimisation steps. Peak memory is torch.cuda.max_memory_allocated on CUDA, the process's max
RSS on CPU. Presets: demo (CPU-sized), lite, default (nerfacto + the authors' two-grid language
field), paper (nerfacto + the paper's 32-level 2^21 language grid).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's lerf, not an installed one
from common import machine, write_json  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PRESETS = {
    "demo": ["model=demo"],
    "lite": ["model=lite"],
    "default": ["model=nerfacto"],
    "paper": ["model=nerfacto", "model/language=paper"],
}


def run_preset(overrides: list[str], steps: int, warmup: int, rays: int) -> dict:
    import tempfile

    import torch
    from hydra import compose, initialize_config_dir

    from lerf.config import register_configs, to_typed
    from lerf.train.rays import RaySampler
    from lerf.train.trainer import compute_losses, setup

    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = to_typed(compose("train", overrides=overrides))
    with tempfile.TemporaryDirectory() as tmp:  # the trainer's own setup: scene, supervision, model, optimiser
        run = setup(cfg, Path(tmp) / "run")
    model, optimizer, sup = run.model, run.optimizer, run.supervision
    device, backend = torch.device(run.cfg.resolved["device"]), run.cfg.resolved["hashgrid_backend"]
    # Uniform rays, whatever the preset's trainer.ray_sampling: the figure is the model's cost per ray.
    sampler, gen = RaySampler(run.scene, device), torch.Generator().manual_seed(0)

    def step(i):
        loss, _, _ = compute_losses(model, sampler.sample(rays, gen), i, gen, sup)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for i in range(warmup):
        step(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for i in range(steps):
        step(warmup + i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {"backend": backend, "device": str(device), "rays_per_batch": rays, "steps": steps,
            "it_per_s": steps / elapsed, "rays_per_s": rays * steps / elapsed, "peak_memory_gb": peak,
            "peak_memory_kind": "cuda_max_allocated" if device.type == "cuda" else "process_max_rss",
            "params_m": sum(p.numel() for p in model.parameters()) / 1e6}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=list(PRESETS))
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--rays", type=int, default=4096)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--height", type=int, default=128)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="benchmarks/results/train_cpu.json")
    p.add_argument("--override", nargs="*", default=[], help="more Hydra overrides (e.g. scene.num_views=200)")
    p.add_argument("--child", nargs="*", help=argparse.SUPPRESS)
    args = p.parse_args()
    scene = [f"scene.width={args.width}", f"scene.height={args.height}", f"trainer.device={args.device}",
             *args.override]
    if args.child is not None:  # one preset, in its own process
        print(json.dumps(run_preset(args.child + scene, args.steps, args.warmup, args.rays)))
        return
    rows = {}
    for name in args.presets:
        cmd = [sys.executable, __file__, "--steps", str(args.steps), "--warmup", str(args.warmup), "--rays",
               str(args.rays), "--width", str(args.width), "--height", str(args.height), "--device", args.device,
               "--override", *args.override, "--child", *PRESETS[name]]
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        if proc.returncode != 0:
            rows[name] = {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
        else:
            rows[name] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(name, rows[name], flush=True)
    write_json({"benchmark": "train", "scene": f"demo {args.width}x{args.height}", "presets": rows,
                "machine": machine()}, args.out)


if __name__ == "__main__":
    main()
