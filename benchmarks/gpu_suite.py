"""Every GPU claim of the README, measured in one command (issue 14).

    python benchmarks/gpu_suite.py                      # all parts, on CUDA
    python benchmarks/gpu_suite.py --part query         # one part (repeat --part for several)
    python benchmarks/gpu_suite.py --dry-run            # every part on CPU at toy sizes (seconds)

Parts (benchmarks/gpu_parts/, each sized to finish in 8 minutes or less on an H100): correctness,
hashgrid, training, query, pyramid, viewer. Each runs in its own process under a time limit and
writes its section into benchmarks/results/gpu-<device>.json (other parts' sections are kept);
benchmarks/results/gpu-<device>.md is rewritten from the merged JSON with the issue's targets
next to the measured values, which are also printed. --dry-run writes gpu-dryrun-cpu.* into a
temporary directory (or --out-dir), never into benchmarks/results/.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_parts.context import PARTS, REPO, Context, device_slug  # noqa: E402
from gpu_parts.report import markdown, merge_section, target_rows  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", action="append", choices=PARTS, help="run only these parts (default: all)")
    p.add_argument("--dry-run", action="store_true", help="CPU, toy sizes: checks that every part still runs")
    p.add_argument("--out-dir", type=Path, help="default: benchmarks/results (a temp dir with --dry-run)")
    p.add_argument("--work", type=Path, help="scratch dir shared by the parts (default: a temp dir)")
    p.add_argument("--run", type=Path, help="a trained run for the query and viewer parts")
    p.add_argument("--part-timeout", type=float, default=480.0, help="seconds per part (issue 14: 8 minutes)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def run_child(args: argparse.Namespace) -> None:
    """Run one part in this process and merge its section into the JSON."""
    import importlib

    import torch

    from common import machine

    if not args.dry_run and not torch.cuda.is_available():
        sys.exit("gpu_suite: no CUDA device; use --dry-run to exercise the suite on CPU")
    ctx = Context(torch.device("cpu" if args.dry_run else "cuda"), args.dry_run, args.work, args.run)
    start = time.perf_counter()
    section = importlib.import_module(f"gpu_parts.{args.child}").run(ctx)
    section["part_s"] = round(time.perf_counter() - start, 1)
    path = args.out_dir / f"gpu-{device_slug(ctx)}.json"
    result = merge_section(path, args.child, section, machine())
    (path.with_suffix(".md")).write_text(markdown(result, f"GPU suite: {device_slug(ctx)}"))


def run_parts(args: argparse.Namespace, argv: list[str]) -> Path:
    """Each part in its own process (its own peak memory, a hung part cannot stall the rest)."""
    for part in args.part or PARTS:
        cmd = [sys.executable, __file__, *argv, "--out-dir", str(args.out_dir), "--work", str(args.work),
               "--child", part]
        print(f"== {part}", flush=True)
        start = time.perf_counter()
        try:
            done = subprocess.run(cmd, cwd=REPO, timeout=args.part_timeout)
            status = "ok" if done.returncode == 0 else f"failed (exit {done.returncode})"
        except subprocess.TimeoutExpired:
            status = f"stopped after {args.part_timeout:.0f} s"
        print(f"== {part}: {status}, {time.perf_counter() - start:.0f} s", flush=True)
    return args.out_dir / f"gpu-{'dryrun-cpu' if args.dry_run else '*'}.json"


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    args.out_dir = args.out_dir or (Path(tempfile.mkdtemp(prefix="gpu_suite_")) if args.dry_run
                                    else REPO / "benchmarks" / "results")
    args.work = args.work or Path(tempfile.mkdtemp(prefix="gpu_suite_work_"))
    if args.child:
        return run_child(args)
    pattern = run_parts(args, strip_options(argv, ("--out-dir", "--work")))
    for path in sorted(pattern.parent.glob(pattern.name)):
        print(f"\nresults: {path} (+ {path.with_suffix('.md').name})")
        for what, target, measured, met in target_rows(json.loads(path.read_text())):
            print(f"  {what:<45} target {target:<12} measured {measured:<14} met: {met}")


def strip_options(argv: list[str], names: tuple[str, ...]) -> list[str]:
    """argv without `--name value` pairs for the given option names (the driver passes its own)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in names:
            skip = True
        elif not any(arg.startswith(n + "=") for n in names):
            out.append(arg)
    return out


if __name__ == "__main__":
    main()
