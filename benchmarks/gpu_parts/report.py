"""Targets (issue 14), the merged JSON of a suite run, and its markdown table."""
from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Callable, Optional


def _get(result: dict, *keys):
    for key in keys:
        if not isinstance(result, dict) or key not in result:
            return None
        result = result[key]
    return result


def _speedup(r: dict) -> Optional[float]:
    row = _get(r, "hashgrid", "results", f"nerf/{2**18}") or {}
    found = [v["forward_backward"]["paired_median"] for k, v in row.items() if k.startswith("triton_speedup")]
    return found[0] if found else None


def _gb(r: dict, preset: str) -> Optional[float]:
    return _get(r, "training", "presets", preset, "peak_memory_gb")


# (what, target, measured(result) -> number or None, unit, ok(number) -> bool)
TARGETS: list[tuple[str, str, Callable, str, Callable]] = [
    ("Triton hash grid fwd+bwd at 2^18 (NeRF grid)", ">= 3x torch", _speedup, "x", lambda v: v >= 3),
    ("default preset speed", ">= 22 it/s", lambda r: _get(r, "training", "presets", "default", "it_per_s"), "it/s",
     lambda v: v >= 22),
    ("default preset memory", "<= 15 GB", lambda r: _gb(r, "default"), "GB", lambda v: v <= 15),
    ("lite preset memory", "<= 8 GB", lambda r: _gb(r, "lite"), "GB", lambda v: v <= 8),
    ("new prompt at 1440x1080 (scale + peak)", "<= 50 ms", lambda r: _get(r, "query", "median_cached_ms"), "ms",
     lambda v: v <= 50),
    ("new prompt at 1440x1080 (+ exact map)", "<= 50 ms", lambda r: _get(r, "query", "median_cached_exact_map_ms"),
     "ms", lambda v: v <= 50),
    ("query cache at 1440x1080", "<= 4 GB", lambda r: _get(r, "query", "cache_gb"), "GB", lambda v: v <= 4),
    ("pyramid, 200 images (extrapolated)", "<= 5 min", lambda r: _get(r, "pyramid", "extrapolated_200_images_s"),
     "s", lambda v: v <= 300),
]


def target_rows(result: dict) -> list[list[str]]:
    rows = []
    for what, target, measure, unit, ok in TARGETS:
        value = measure(result)
        shown = "not measured" if value is None else f"{value:.3g} {unit}"
        rows.append([what, target, shown, "-" if value is None else ("yes" if ok(value) else "NO")])
    return rows


def merge_section(path: Path, part: str, section: dict, machine: dict) -> dict:
    """Write one part's section into the suite's JSON, keeping the other parts' sections."""
    result = json.loads(path.read_text()) if path.is_file() else {}
    result[part] = {**section, "measured_on": str(date.today()), "machine": machine}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1, default=str) + "\n")
    return result


def markdown(result: dict, title: str) -> str:
    lines = [f"# {title}", "", "Written by `python benchmarks/gpu_suite.py`; raw numbers in the JSON beside this file.",
             "", "| what | target | measured | met |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in target_rows(result)]
    lines += ["", "| part | measured on | device | summary |", "|---|---|---|---|"]
    for part, section in result.items():
        device = _get(section, "machine", "gpu") or _get(section, "machine", "cpu")
        lines.append(f"| {part} | {section.get('measured_on')} | {device} | {summary(part, section)} |")
    return "\n".join(lines) + "\n"


def summary(part: str, s: dict) -> str:
    if "error" in s:
        return f"failed: {s['error']}"
    if part == "correctness":
        return "all checks passed" if s.get("ok") else "CHECKS FAILED (see JSON)"
    if part == "hashgrid":
        return "; ".join(f"{k}: " + ", ".join(f"{b} {v['forward_backward_ms']:.2f} ms" for b, v in row.items()
                                               if isinstance(v, dict) and "forward_backward_ms" in v)
                         for k, row in s.get("results", {}).items())
    if part == "training":
        return "; ".join(f"{k}: {v.get('it_per_s', 0):.1f} it/s, {v.get('peak_memory_gb', 0):.2f} GB"
                         if "error" not in v else f"{k}: failed" for k, v in s.get("presets", {}).items())
    if part == "query":
        return (f"{s['resolution']}: cached {s['median_cached_ms']:.1f} ms, with exact map "
                f"{s['median_cached_exact_map_ms']:.1f} ms, exact {s['median_exact_s']:.2f} s, cache "
                f"{s['cache_gb']:.2f} GB ({s['cache_kind']})")
    if part == "pyramid":
        return (f"{s['s_per_image']:.2f} s/image, {s['extrapolated_200_images_s']:.0f} s for 200 "
                f"({s['weights']} weights)")
    if part == "viewer":
        return f"{s['resolution']}: {s['median_ms']:.1f} ms"
    return ""
