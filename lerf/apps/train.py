"""Train LERF on one scene: `lerf-train scene=demo` or `python train.py scene=demo`
(docs/configuration.md for every option).

`python train.py resume=<run> [trainer.max_steps=N]` continues a run with its own config; only
the keys given on the command line change it.
"""
import logging
import sys
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from lerf.apps import repo_dir
from lerf.apps.cli import is_user_error, one_line, wants_traceback
from lerf.config import register_configs
from lerf.evaluation.after_training import evaluate_trained
from lerf.evaluation.progress import progress_pictures
from lerf.train.trainer import train

register_configs()
log = logging.getLogger("train")


# An absolute path: Hydra would resolve a relative one against this file, not the repository.
@hydra.main(config_path=str(repo_dir("conf")), config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        summary = train(cfg, run_dir, evaluate=evaluate_trained, overrides=list(hydra_cfg.overrides.task),
                        pictures=progress_pictures)
    except Exception as err:
        if hydra_cfg.mode == RunMode.MULTIRUN:
            # In a sweep one failed variant must not stop the others: record it and move on.
            (run_dir / "failed.txt").write_text(traceback.format_exc())
            log.exception("job %s failed; see %s", hydra_cfg.job.num, run_dir / "failed.txt")
            return float("nan")
        if not is_user_error(err) or wants_traceback() or cfg.get("debug"):
            raise
        print(one_line(err), file=sys.stderr)
        raise SystemExit(2) from None
    return summary.get("psnr", float("nan"))


if __name__ == "__main__":
    main()
