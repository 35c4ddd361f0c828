"""benchmarks/gpu_suite.py --dry-run: every part still runs (CPU, toy sizes) and writes its
section and the markdown table, outside benchmarks/results/."""
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PARTS = ("correctness", "hashgrid", "training", "query", "pyramid", "viewer")


def test_gpu_suite_dry_run_writes_every_part(tmp_path):
    cmd = [sys.executable, "benchmarks/gpu_suite.py", "--dry-run", "--out-dir", str(tmp_path / "out"),
           "--work", str(tmp_path / "work")]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "out" / "gpu-dryrun-cpu.json").read_text())
    assert set(result) == set(PARTS), done.stdout[-3000:] + done.stderr[-3000:]
    assert result["correctness"]["ok"]
    assert all(r["cached_same_scale_and_peak"] for r in result["query"]["prompts"].values())
    assert result["query"]["cache_kind"].startswith("bounded")
    assert "error" not in result["training"]["presets"]["demo"]
    table = (tmp_path / "out" / "gpu-dryrun-cpu.md").read_text()
    assert "| what | target | measured | met |" in table and "<= 4 GB" in table
    assert "target" in done.stdout  # targets printed next to the measured values


def test_gpu_suite_refuses_to_measure_without_cuda(tmp_path):
    """On any machine: the suite is started with no CUDA device visible (CUDA_VISIBLE_DEVICES empty)."""
    import os

    cmd = [sys.executable, "benchmarks/gpu_suite.py", "--part", "viewer", "--out-dir", str(tmp_path)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert "gpu_suite: no CUDA device; use --dry-run" in done.stderr, done.stderr[-3000:]
    assert not list(tmp_path.glob("*.json"))
