"""Sweeps: our launcher configs compose, and a two-job sweep through hydra-submitit-launcher's
local executor (the code path SLURM uses, minus sbatch) is collected by ``eval/ablations.py``.

The sweep runs a tiny stand-in Hydra app written into the test's tmp dir; when the trainer can
run a tiny config in seconds, replace ``sweep_app_command`` with it (e.g.
``[sys.executable, "train.py", "experiment=tiny"]``) and keep the rest.
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

TINY_APP = '''
import json
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig


@hydra.main(version_base=None, config_path=None)
def main(cfg) -> None:
    out = Path(HydraConfig.get().runtime.output_dir)
    x = float(cfg.x)
    eval_json = {"psnr": 20.0 + x, "ssim": 0.5 + 0.1 * x, "steps": 10, "train_time_s": 0.1}
    (out / "eval.json").write_text(json.dumps(eval_json))
    (out / "localization.json").write_text(json.dumps({"overall": x / 4}))


if __name__ == "__main__":
    main()
'''


def sweep_app_command(tmp_path: Path) -> list[str]:
    """The command whose multirun the test sweeps (stand-in app until the trainer is swapped in)."""
    app = tmp_path / "app.py"
    app.write_text(TINY_APP)
    return [sys.executable, str(app)]


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
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "1"}
    launch = subprocess.run(
        [*sweep_app_command(tmp_path), "-m", "hydra/launcher=submitit_local",
         "hydra.launcher.timeout_min=2", "+x=1,2", f"hydra.sweep.dir={sweep_dir}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert launch.returncode == 0, launch.stdout[-2000:] + launch.stderr[-2000:]
    for job in ("0", "1"):
        assert json.loads((sweep_dir / job / "eval.json").read_text())["steps"] == 10
    assert (sweep_dir / ".submitit").is_dir()  # the jobs really went through submitit

    collect = subprocess.run(
        [sys.executable, str(REPO / "eval" / "ablations.py"), f"sweep={sweep_dir}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )
    assert collect.returncode == 0, collect.stderr[-2000:]
    table = (sweep_dir / "ablations.md").read_text()
    assert "| 0 | +x=1 | ok | 25.0 |" in table and "| 1 | +x=2 | ok | 50.0 |" in table
    assert (sweep_dir / "ablations.png").stat().st_size > 0
