"""The programs (lerf/apps/): console scripts that resolve, work from any directory, and thin
train.py / query.py / view.py; and the import-graph count of benchmarks/import_graph.py."""
from __future__ import annotations

import ast
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from import_graph import import_graph, mutual_pairs  # noqa: E402


def console_scripts() -> dict[str, str]:
    """setup.py's console_scripts, e.g. {"lerf-train": "lerf.apps.train:main"}, read without running it."""
    for node in ast.walk(ast.parse((REPO / "setup.py").read_text())):
        if isinstance(node, ast.keyword) and node.arg == "entry_points":
            specs = ast.literal_eval(node.value)["console_scripts"]
            return dict(tuple(part.strip() for part in spec.split("=")) for spec in specs)
    raise AssertionError("setup.py declares no entry_points")


def run_in(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_every_console_script_names_a_callable():
    scripts = console_scripts()
    assert set(scripts) == {"lerf-train", "lerf-query", "lerf-view", "lerf-eval"}
    for name, target in scripts.items():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func)), name


def test_lerf_train_composes_the_config_from_another_directory(tmp_path):
    # As the console script runs it: the module's main, with the repository nowhere near the cwd.
    done = run_in(tmp_path, "-c", "import sys; from lerf.apps.train import main; sys.argv[0] = 'lerf-train'; main()",
                  "--cfg", "job", "scene=demo", "trainer.max_steps=7")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "kind: demo" in done.stdout and "max_steps: 7" in done.stdout
    assert not any(tmp_path.iterdir())  # --cfg job only prints


def test_lerf_eval_runs_the_named_protocol_and_names_the_known_ones(tmp_path):
    from lerf.apps.evaluate import protocols

    assert set(protocols()) == {p.stem for p in (REPO / "eval").glob("*.py") if not p.stem.startswith("_")}
    assert {"localization", "segmentation", "render"} <= set(protocols())
    code = "import sys; from lerf.apps.evaluate import main; main()"
    unknown = run_in(tmp_path, "-c", code, "nonsense", "run=x")
    assert unknown.returncode == 2 and "unknown protocol 'nonsense'" in unknown.stderr and "localization" in unknown.stderr
    missing = run_in(tmp_path, "-c", code, "render", f"run={tmp_path / 'no_run'}")
    assert missing.returncode == 2, missing.stderr[-2000:]
    errors = [line for line in missing.stderr.splitlines() if line.startswith("error:")]  # log lines aside
    assert len(errors) == 1 and str(tmp_path / "no_run") in errors[0]


@pytest.mark.parametrize("script", ["train.py", "query.py", "view.py"])
def test_entry_scripts_are_thin(script):
    # Each imports its program from lerf.apps and nothing else of lerf.
    nodes, edges = import_graph(REPO)
    assert [b for a, b in edges if a == script] == ["lerf.apps"]
    assert len((REPO / script).read_text().splitlines()) <= 15


def write(root: Path, rel: str, text: str = "") -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_import_graph_counts_package_level_edges(tmp_path):
    write(tmp_path, "lerf/__init__.py", "def f():\n    from lerf.q.run import g\n")
    write(tmp_path, "lerf/config.py")
    write(tmp_path, "lerf/q/__init__.py")
    write(tmp_path, "lerf/q/run.py", "from lerf.config import X\nfrom lerf.q import other\n")  # within q: no edge
    write(tmp_path, "lerf/d/__init__.py")
    write(tmp_path, "lerf/d/a.py", "import numpy\nfrom lerf import config\n")
    write(tmp_path, "lerf/q/lazy.py", "def h():\n    from lerf.d.a import y\n")  # lazy imports count
    write(tmp_path, "lerf/d/b.py", "from lerf.q.run import g\n")
    write(tmp_path, "eval/x.py", "from lerf import load_run\n")  # a name of lerf's root: the node `lerf`
    write(tmp_path, "benchmarks/y.py", "import lerf.d.a\n")
    write(tmp_path, "train.py", "from lerf.q.run import g\n")
    nodes, edges = import_graph(tmp_path)
    assert nodes == ["benchmarks/", "eval/", "lerf", "lerf.config", "lerf.d", "lerf.q", "train.py"]
    assert edges == [("benchmarks/", "lerf.d"), ("eval/", "lerf"), ("lerf", "lerf.q"), ("lerf.d", "lerf.config"),
                     ("lerf.d", "lerf.q"), ("lerf.q", "lerf.config"), ("lerf.q", "lerf.d"), ("train.py", "lerf.q")]
    assert mutual_pairs(edges) == [("lerf.d", "lerf.q")]


def test_benchmarks_reach_lerf_through_its_public_entry_points():
    # No re-assembly of the trainer from its parts: device, model and checkpoint are reached
    # through lerf.train / lerf.query (bench_train uses the trainer's own `setup`).
    _, edges = import_graph(REPO)
    reached = {b for a, b in edges if a == "benchmarks/"}
    assert not reached & {"lerf.model", "lerf.render", "lerf.demo"}, reached
