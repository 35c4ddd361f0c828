"""Write evaluation results as JSON (for tools) and a markdown table (for people)."""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

from lerf.data.atomic import write_json, write_text


def grouped_means(results: Sequence, value: Callable[[object], float], mean: Callable[[list], float]) -> dict:
    """`mean` of `value(r)` pooled over all results, per query level, per scene, per view and per
    query; results carry `scene`, `view`, `query` and `query_level` (localization, segmentation).

    Example (mean = average): values 1, 0 in view "a" and 1 in view "b" of one scene -> pooled
    2/3, per_view {"a": 0.5, "b": 1.0}; ``mean_over_scenes`` averages the per-scene means.
    """
    per_scene: dict[str, list] = defaultdict(list)
    per_view: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    per_query: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    per_level: dict[str, list] = defaultdict(list)
    for r in results:
        per_scene[r.scene].append(value(r))
        per_view[r.scene][r.view].append(value(r))
        per_query[r.scene][r.query].append(value(r))
        if r.query_level:
            per_level[r.query_level].append(value(r))
    scene_means = {s: mean(v) for s, v in per_scene.items()}
    return {
        "pooled": mean([value(r) for r in results]),
        "per_level": {lv: mean(v) for lv, v in per_level.items()},
        "num_per_level": {lv: len(v) for lv, v in per_level.items()},
        "mean_over_scenes": mean(list(scene_means.values())),
        "num_queries": len(results),
        "per_scene": scene_means,
        "per_view": {s: {v: mean(x) for v, x in d.items()} for s, d in per_view.items()},
        "per_query": {s: {q: mean(x) for q, x in d.items()} for s, d in per_query.items()},
    }


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-markdown table; floats to 4 decimals, None as "-".

    Example: markdown_table(["a", "b"], [[1, 0.5]]) ->
    "| a | b |\\n| --- | --- |\\n| 1 | 0.5000 |"
    """

    def cell(v: object) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return "inf" if math.isinf(v) else f"{v:.4f}"
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def format_table(result: dict) -> str:
    """Markdown for a ``summarize_localization`` or ``summarize_segmentation`` result.

    One summary table per scene, then one per-query (localization) or per-category
    (segmentation) table per scene.
    """
    if "miou" in result:
        title, key, per_name, per_key = "Segmentation (lerf_ovs)", "miou", "category", "per_category"
        headline = f"mIoU {result['miou']:.4f}"
    elif "overall" in result:
        title, key, per_name, per_key = "Localization", "overall", "query", "per_query"
        headline = f"accuracy {result['overall']:.4f}"
    else:
        raise ValueError("result has neither 'miou' (segmentation) nor 'overall' (localization)")
    metric = "mIoU" if key == "miou" else "accuracy"
    parts = [
        f"## {title}: {headline} over {result.get('num_queries', '?')} queries",
        "",
        markdown_table(["scene", metric], [[s or "(scene)", v] for s, v in result["per_scene"].items()]),
    ]
    if len(result["per_scene"]) > 1:
        parts += ["", f"mean over scenes: {result['mean_over_scenes']:.4f}"]
    if result.get("per_level"):
        counts = result.get("num_per_level", {})
        parts += ["", "### per level", "",
                  markdown_table(["level", metric, "queries"],
                                 [[lv, v, counts.get(lv)] for lv, v in result["per_level"].items()])]
    for scene, values in result.get(per_key, {}).items():
        parts += ["", f"### {scene or 'scene'}: per {per_name}", ""]
        parts.append(markdown_table([per_name, metric], [[q, v] for q, v in values.items()]))
    return "\n".join(parts) + "\n"


def write_report(result: dict, json_path: str | Path, table_path: str | Path) -> None:
    """Write ``result`` as indented JSON and its ``format_table`` markdown; make parent folders."""
    json_path, table_path = Path(json_path), Path(table_path)
    for p in (json_path, table_path):
        p.parent.mkdir(parents=True, exist_ok=True)
    write_json(json_path, result)
    write_text(table_path, format_table(result))
