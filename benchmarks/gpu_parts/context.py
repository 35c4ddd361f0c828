"""What every part receives, and the shared bits: a tiny trained run, timing helpers."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO))
from common import timed  # noqa: E402,F401  (re-exported for the parts)

PARTS = ("correctness", "hashgrid", "training", "query", "pyramid", "viewer")


@dataclass
class Context:
    device: torch.device
    dry_run: bool  # CPU, toy sizes: seconds per part, keeps the code paths exercised
    work: Path  # scratch space shared by the parts of one suite run (scene caches, the tiny run)
    run: Path | None = None  # a trained run to query (else a short one is trained into `work`)

    def size(self, gpu, dry):
        """The GPU-sized setting, or its toy stand-in in --dry-run."""
        return dry if self.dry_run else gpu


def tiny_run(ctx: Context) -> Path:
    """A trained run on the demo scene, for the query and viewer parts (weights matter there: the
    bounded query cache prunes by how low-rank the rendered embeddings are). On a GPU: the default
    model (nerfacto + the seed's language grid) for 300 steps; dry run: the demo model, 10 steps."""
    if ctx.run is not None:
        return ctx.run
    run_dir = ctx.work / "tiny_run"
    done = ctx.work / "tiny_run.done"  # written once training finished: a half-trained run is not reused
    if done.is_file():
        return run_dir
    from hydra import compose, initialize_config_dir

    from lerf.config import register_configs
    from lerf.train.trainer import train

    steps = ctx.size(300, 10)
    overrides = [f"scene.cache_dir={ctx.work / 'scenes'}", f"encoder.cache_dir={ctx.work / 'features'}",
                 f"trainer.device={ctx.device.type}", f"trainer.max_steps={steps}", f"trainer.checkpoint_every={steps}",
                 "trainer.eval_at_end=false", "trainer.image_every=0"]
    overrides += ["trainer=smoke", "scene.num_views=8", "scene.width=48", "scene.height=48", "trainer.num_threads=1"
                  ] if ctx.dry_run else ["model=nerfacto"]
    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        train(compose("train", overrides=overrides), run_dir)
    done.touch()
    return run_dir


def device_slug(ctx: Context) -> str:
    if ctx.dry_run:
        return "dryrun-cpu"
    name = torch.cuda.get_device_name(ctx.device) if ctx.device.type == "cuda" else "cpu"
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
