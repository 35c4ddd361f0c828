"""The lerf_ovs benchmark over its four scenes: check a data root, score each trained run with the
lerf_ovs protocol (localization.py, segmentation.py), and write one table beside the published rows.

Data root layout (LangSplat's release): `<root>/<scene>/images/` + `<root>/<scene>/sparse/0/`
for scene in figurines, ramen, teatime, waldo_kitchen, and `<root>/label/<scene>/frame_XXXXX.json`
(labels.py). A labelled frame's camera is the COLMAP image of the same name.

Two averages, both reported and labelled, because papers use both: the **mean over scenes** (each
scene's accuracy / mIoU, averaged; LERF's and LangSplat's rows) and the **query-weighted** mean
(every (frame, category) query of every scene pooled; LangSplatV2's row).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from lerf.data.atomic import write_json, write_text
from lerf.data.colmap import read_colmap
from lerf.evaluation.labels import load_label_dir
from lerf.evaluation.language_eval import evaluate_localization_and_segmentation
from lerf.evaluation.localization import LocalizationResult, summarize_localization
from lerf.evaluation.report import markdown_table
from lerf.evaluation.run_eval import match_frames
from lerf.evaluation.segmentation import SegmentationResult, summarize_segmentation
from lerf.model.checkpoint import has_checkpoint
from lerf.query.run import load_run

log = logging.getLogger(__name__)
SCENES = ("figurines", "ramen", "teatime", "waldo_kitchen")


@dataclass(frozen=True)
class Published:
    method: str
    source: str
    localization: float  # %
    miou: float  # %
    average: str  # "mean_over_scenes" | "query_weighted": how the paper averaged its row
    localization_scene_mean: Optional[float] = None  # when a query-weighted paper also gives it


# The rows papers report on lerf_ovs (accuracy and mIoU in %).
PUBLISHED = (
    Published("LERF", "as reported by LangSplat (Qin et al., CVPR 2024)", 73.6, 37.4, "mean_over_scenes"),
    Published("LangSplat", "Qin et al., CVPR 2024", 84.3, 51.4, "mean_over_scenes"),
    Published("LangSplatV2", "Li et al., 2025; weighted by query (its per-scene mean localization: 86.4)",
              84.1, 59.9, "query_weighted", localization_scene_mean=86.4),
)


@dataclass(frozen=True)
class SceneInput:
    name: str
    scene_dir: Path
    labels_dir: Path


def check_data_root(data_root: str | Path, scenes: list[str], runs: dict[str, str]) -> list[SceneInput]:
    """Every asked scene has its labels, and (unless a run is given for it) its COLMAP folder with
    an image for every labelled frame: checked before hours of training, one clear error each."""
    root = Path(data_root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"data_root {root} not found; expected a folder with {', '.join(SCENES)} and label/")
    unknown = [s for s in scenes if s not in SCENES] + [s for s in runs if s not in scenes]
    if unknown or not scenes:
        raise ValueError(f"lerf_ovs scenes are {', '.join(SCENES)}; got scenes={scenes}, runs for {sorted(runs)}")
    items = [SceneInput(name, root / name, root / "label" / name) for name in scenes]
    missing = [str(p.relative_to(root)) for i in items for p in (i.scene_dir, i.labels_dir)
               if not p.is_dir() and not (p == i.scene_dir and i.name in runs)]
    if missing:
        raise FileNotFoundError(f"data_root {root}: {', '.join(missing)} not found; expected {', '.join(SCENES)} and "
                                "label/<scene> (scenes=[...] runs a subset)")
    for scene, given in runs.items():  # before any training, not hours later
        if not is_trained_run(Path(given).expanduser()):
            raise FileNotFoundError(f"runs.{scene}={given}: no checkpoint there; expected a run directory of train.py")
    for item in items:
        frames = load_label_dir(item.labels_dir)
        if item.name not in runs:  # every labelled frame has its COLMAP image (match_frames reads names only)
            match_frames(read_colmap(item.scene_dir, load_images=False), frames, item.labels_dir)
    return items


def is_trained_run(run_dir: Path) -> bool:
    """A directory train.py wrote a checkpoint into: scored as it is, never retrained."""
    return has_checkpoint(run_dir)


def evaluate_scene(run_dir: str | Path, item: SceneInput, out_dir: Path, *, smooth_k: int, threshold: float,
                   levels: str, device: str = "auto", chunk: int = 4096) -> tuple[dict, dict]:
    """lerf_ovs localization and segmentation of one trained run, its reports in out_dir. The
    labelled frames' cameras are the run's own (the scene as it was trained)."""
    loaded = load_run(run_dir, device)
    trained_on = Path(loaded.cfg.scene.path or "").expanduser().resolve()
    if trained_on != item.scene_dir.expanduser().resolve():
        log.warning("%s: the run %s was trained on %s, not %s; scoring it with %s's labels", item.name, run_dir,
                    trained_on, item.scene_dir, item.name)
    engine = loaded.engine(chunk)
    # One labelled view cached at a time: the one pass asks all of a view's queries together, and a
    # ~1000-px view's cache may take up to the engine's 4 GiB budget.
    engine.max_cached_views = 1
    return evaluate_localization_and_segmentation(
        engine, loaded.scene, item.name, out_dir, threshold, smooth_k, labels=str(item.labels_dir),
        protocol="lerf_ovs", levels=levels)


def _pooled(reports: dict[str, tuple[dict, dict]]) -> tuple[dict, dict]:
    """Every scene's per-query results pooled: overall = query-weighted, mean_over_scenes."""
    loc = [LocalizationResult(**r) for loc, _ in reports.values() for r in loc["results"]]
    seg = [SegmentationResult(**{**r, "iou": math.nan if r["iou"] is None else r["iou"]})
           for _, seg in reports.values() for r in seg["results"]]
    return summarize_localization(loc), summarize_segmentation(seg)


def _defined(value: float) -> Optional[float]:
    """JSON has no NaN: an undefined mIoU (every IoU 0 / 0) is written as null."""
    return None if math.isnan(value) else value


def benchmark_summary(reports: dict[str, tuple[dict, dict]], runs: dict[str, str], settings: dict) -> dict:
    """The table's numbers (fractions in [0, 1]) from each scene's (localization, segmentation) report."""
    loc, seg = _pooled(reports)
    scenes = {s: {"localization": loc["per_scene"][s], "miou": _defined(seg["per_scene"][s]),
                  "num_queries": reports[s][0]["num_queries"], "num_undefined_iou": reports[s][1]["num_undefined"],
                  "run": runs[s]} for s in reports}
    return {
        "scenes": scenes,
        "mean_over_scenes": {"localization": loc["mean_over_scenes"], "miou": _defined(seg["mean_over_scenes"])},
        "query_weighted": {"localization": loc["overall"], "miou": _defined(seg["miou"]),
                           "num_queries": loc["num_queries"]},
        "all_scenes": sorted(reports) == sorted(SCENES),
        "settings": settings,
        "published": [vars(p) for p in PUBLISHED],
    }


def _pct(value: Optional[float]) -> Optional[str]:
    return None if value is None else f"{100 * value:.1f}"


def _metric_table(summary: dict, key: str) -> str:
    names = list(summary["scenes"])
    rows = [["this run"] + [_pct(summary["scenes"][s][key]) for s in names]
            + [_pct(summary["mean_over_scenes"][key]), _pct(summary["query_weighted"][key])]]
    for p in PUBLISHED:
        value = p.localization if key == "localization" else p.miou
        scene_mean = value if p.average == "mean_over_scenes" else (
            p.localization_scene_mean if key == "localization" else None)
        weighted = value if p.average == "query_weighted" else None
        cells = [None if v is None else f"{v:.1f}" for v in (scene_mean, weighted)]
        rows.append([f"{p.method} (published)"] + [None] * len(names) + cells)
    return markdown_table(["method", *names, "mean over scenes", "query-weighted"], rows)


def format_benchmark(summary: dict) -> str:
    s = summary["settings"]
    parts = ["# lerf_ovs benchmark", "",
             f"Protocol: lerf_ovs (LangSplat's eval): localization = argmax of the {s['smooth_k']}x{s['smooth_k']} "
             f"mean-filtered relevancy inside a box; segmentation threshold {s['threshold']}; maps: {s['levels']}.",
             "`mean over scenes` averages the per-scene figures; `query-weighted` pools every (frame, category) "
             f"query ({summary['query_weighted']['num_queries']} here). Published rows give the average their "
             "paper used; `-` where it gave none."]
    if not summary["all_scenes"]:
        parts += ["", f"**Only {len(summary['scenes'])} of the {len(SCENES)} scenes: the means are not comparable "
                  "with the published rows.**"]
    parts += ["", "## Localization accuracy (%)", "", _metric_table(summary, "localization"),
              "", "## Segmentation mIoU (%)", "", _metric_table(summary, "miou"), "", "Sources: "
              + "; ".join(f"{p.method}: {p.source}" for p in PUBLISHED) + "."]
    return "\n".join(parts) + "\n"


def write_benchmark(summary: dict, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    md, js = out_dir / "lerf_ovs.md", out_dir / "lerf_ovs.json"
    write_json(js, summary)
    write_text(md, format_benchmark(summary))
    return md, js
