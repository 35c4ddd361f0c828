"""Refuse a `train.py` command that would change an existing run, before Hydra writes anything.

Hydra's `run_job` creates `hydra.run.dir`, opens `<dir>/train.log` and writes `<dir>/.hydra/`
before the task function starts (hydra/core/utils.py, Hydra 1.3), so a check inside `train()`
comes too late: a fresh run pointed at an existing run had already replaced that run's
`.hydra/config.yaml`, and `resume=<missing dir>` had created the directory and a `train.log`.
Hydra calls the callbacks' `on_run_start` before `run_job` (hydra/_internal/hydra.py), so the
checks run there (conf/train.yaml, `hydra.callbacks.run_guard`). `train()` repeats them for
callers that do not go through Hydra.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from lerf.apps.cli import is_user_error, one_line, wants_traceback
from lerf.train.trainer import check_resume_dir, prepare_run_dir


def check_run_command(config: DictConfig) -> None:
    """The run directory `train.py` is about to create or enter may be used: `resume=` names an
    existing directory, and a fresh run does not land on a directory holding a run."""
    resume = config.get("resume")
    check_resume_dir(resume)
    if not resume:
        prepare_run_dir(Path(str(OmegaConf.select(config, "hydra.run.dir"))), resume=False)


class RunGuard(Callback):
    """Hydra callback: `check_run_command` in `on_run_start` (single runs; a sweep's job folders are new)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            check_run_command(config)
        except Exception as err:
            if not is_user_error(err) or wants_traceback():
                raise
            print(one_line(err), file=sys.stderr)
            raise SystemExit(2) from None
