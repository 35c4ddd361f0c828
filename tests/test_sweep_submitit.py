"""Sweeps: our launcher configs compose, and a two-job sweep through hydra-submitit-launcher's
local executor (the code path SLURM uses, minus sbatch) is collected by ``eval/ablations.py``.

The sweep runs the real trainer (train.py) on a tiny demo scene for a few steps, two ablation
overlays as two jobs.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

REPO = Path(__file__).resolve().parents[1]

def sweep_app_command(tmp_path: Path) -> list[str]:
    """The real trainer on a tiny demo scene (8 views, 48x48) for a few steps."""
    return [sys.executable, str(REPO / "train.py"), "-m", "trainer=smoke", "trainer.max_steps=4",
            "trainer.eval_chunk=1024", "scene.num_views=8", "scene.width=48", "scene.height=48",
            "scene.eval_every=4", f"scene.cache_dir={tmp_path / 'scenes'}", f"encoder.cache_dir={tmp_path / 'features'}"]


def _launcher_config(*overrides: str):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        return compose(overrides=list(overrides), return_hydra_config=True).hydra.launcher


@pytest.mark.parametrize(
    "launcher, target, fields",
    [
        ("slurm", "SlurmLauncher", {"gpus_per_node": 1, "timeout_min": 120, "partition": None}),
        ("local_parallel", "JoblibLauncher", {"n_jobs": 2, "prefer": "processes"}),
    ],
)
def test_launcher_configs_compose_over_the_plugins(launcher, target, fields):
    node = _launcher_config(f"hydra/launcher={launcher}")
    assert node._target_.endswith(target)  # the plugin's schema is underneath our file
    assert {key: node[key] for key in fields} == fields
    # the command line still wins over our file
    assert _launcher_config("hydra/launcher=slurm", "hydra.launcher.partition=gpu").partition == "gpu"


def test_two_job_sweep_through_submitit_local(tmp_path):
    sweep_dir = tmp_path / "multirun"
    # PYTHONPATH: the jobs (submitit children) import this checkout's lerf, not an installed copy
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "1", "PYTHONPATH": str(REPO)}
    launch = subprocess.run(
        [*sweep_app_command(tmp_path), "hydra/launcher=submitit_local",
         "hydra.launcher.timeout_min=5", "experiment=baseline,no_dino",
         # an invalid loss makes two of the four jobs fail: the sweep must go on and report them
         "model.language.clip_loss=huber,l3", f"hydra.sweep.dir={sweep_dir}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert launch.returncode == 0, launch.stdout[-2000:] + launch.stderr[-2000:]
    ok_jobs = [d for d in sweep_dir.iterdir() if (d / "eval.json").is_file()]
    failed_jobs = [d for d in sweep_dir.iterdir() if (d / "failed.txt").is_file()]
    assert len(ok_jobs) == 2 and len(failed_jobs) == 2
    for job in [d.name for d in ok_jobs]:
        assert json.loads((sweep_dir / job / "eval.json").read_text())["steps"] == 4
        assert (sweep_dir / job / "provenance.json").is_file() and (sweep_dir / job / ".hydra").is_dir()
    assert (sweep_dir / ".submitit").is_dir()  # the jobs really went through submitit

    collect = subprocess.run(
        [sys.executable, str(REPO / "eval" / "ablations.py"), f"sweep={sweep_dir}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )
    assert collect.returncode == 0, collect.stderr[-2000:]
    table = (sweep_dir / "ablations.md").read_text()
    assert "experiment=baseline" in table and "experiment=no_dino" in table
    assert table.count("**failed**") == 2 and "huber or cosine" in table
    assert (sweep_dir / "ablations.png").stat().st_size > 0
