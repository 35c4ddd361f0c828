"""Train LERF on one scene: `python train.py scene=demo` (see README for every option)."""
import logging
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from lerf.config import register_configs
from lerf.trainer import train

register_configs()
log = logging.getLogger("train")


@hydra.main(config_path="conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float:
    summary = train(cfg, Path(HydraConfig.get().runtime.output_dir))
    return summary.get("psnr", float("nan"))


if __name__ == "__main__":
    main()
