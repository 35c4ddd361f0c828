"""The lerf_ovs benchmark in one command: train (or reuse) each scene, score it with the lerf_ovs
protocol, write one table beside the published rows; the program behind eval/lerf_ovs.py.

    python eval/lerf_ovs.py data_root=<folder with figurines/ ramen/ teatime/ waldo_kitchen/ and label/>
        [scenes=[teatime,ramen]] [runs.teatime=<run dir>] [out=outputs/lerf_ovs]
        [train=[trainer.max_steps=30000,model=lite]] [smooth_k=30] [threshold=0.4]
        [levels=chosen_scale|all_scales] [device=auto]

A scene without a run in `runs.` is trained as `python train.py scene=lerf_ovs scene.name=<scene>`
plus the `train=` overrides would train it, into <out>/<scene>/run; a run already there is
reused, never retrained or overwritten. Writes <out>/<scene>/{localization,segmentation}.{json,md} and
<out>/lerf_ovs.{md,json}: per scene, mean over scenes and query-weighted.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from omegaconf import MISSING

from lerf.apps import repo_dir
from lerf.apps.cli import parse_args
from lerf.evaluation.language_eval import LEVELS
from lerf.evaluation.lerf_ovs import (SCENES, SceneInput, benchmark_summary, check_data_root, evaluate_scene,
                                      is_trained_run, write_benchmark)
from lerf.evaluation.localization import LERF_OVS_SMOOTH_K
from lerf.evaluation.segmentation import LERF_OVS_THRESHOLD

log = logging.getLogger("lerf_ovs")


@dataclass
class LerfOvsArgs:
    data_root: str = MISSING
    scenes: List[str] = field(default_factory=lambda: list(SCENES))
    runs: Dict[str, str] = field(default_factory=dict)  # scene -> a trained run to score instead of training
    out: str = "outputs/lerf_ovs"
    train: List[str] = field(default_factory=list)  # train.py overrides for the scenes trained here
    smooth_k: int = LERF_OVS_SMOOTH_K  # LangSplat's 30 px mean filter, set for ~1000 px renders
    threshold: float = LERF_OVS_THRESHOLD
    levels: str = "chosen_scale"  # chosen_scale: LERF's own map; all_scales: every scale a protocol level
    device: str = "auto"
    chunk: int = 4096


def train_scene(args: LerfOvsArgs, item: SceneInput, run_dir: Path) -> Path:
    """Train one scene with the lerf_ovs preset (its path and labels from data_root) into run_dir."""
    if is_trained_run(run_dir):
        log.info("%s: reusing the run in %s (delete it or pick another out= to retrain)", item.name, run_dir)
        return run_dir
    from hydra import compose, initialize_config_dir

    from lerf.config import register_configs
    from lerf.evaluation.after_training import evaluate_trained
    from lerf.evaluation.progress import progress_pictures
    from lerf.train.trainer import train

    register_configs()
    with initialize_config_dir(config_dir=str(repo_dir("conf")), version_base="1.3"):
        cfg = compose("train", overrides=["scene=lerf_ovs", f"scene.name={item.name}", *args.train])
    # Set after composing: a path is a value, never parsed as override syntax.
    cfg.scene.path, cfg.scene.labels_dir = str(item.scene_dir), str(item.labels_dir)
    log.info("%s: training into %s", item.name, run_dir)
    train(cfg, run_dir, evaluate=evaluate_trained, pictures=progress_pictures)
    return run_dir


def main(argv: Optional[Sequence[str]] = None) -> None:
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s")
    args = parse_args(LerfOvsArgs, argv, usage=__doc__)
    out = Path(args.out).expanduser()
    if args.levels not in LEVELS:
        raise ValueError(f"levels must be one of {', '.join(LEVELS)}, got '{args.levels}'")
    items = check_data_root(args.data_root, args.scenes, args.runs)
    runs = {i.name: Path(args.runs[i.name]) if i.name in args.runs else train_scene(args, i, out / i.name / "run")
            for i in items}
    reports = {i.name: evaluate_scene(runs[i.name], i, out / i.name, smooth_k=args.smooth_k, threshold=args.threshold,
                                      levels=args.levels, device=args.device, chunk=args.chunk) for i in items}
    settings = {"smooth_k": args.smooth_k, "threshold": args.threshold, "levels": args.levels,
                "data_root": str(Path(args.data_root).expanduser().resolve()), "train": list(args.train)}
    summary = benchmark_summary(reports, {s: str(Path(r).resolve()) for s, r in runs.items()}, settings)
    md, js = write_benchmark(summary, out)
    print(Path(md).read_text())
    print(f"wrote {md} and {js}")

