"""Collect a Hydra multirun sweep into one ablation table (markdown) and one bar chart (PNG).

A sweep dir (``hydra.sweep.dir``) holds one subdir per job (``0/``, ``1/``, ...; Hydra's default
``hydra.sweep.subdir=${hydra.job.num}``), each with ``.hydra/overrides.yaml`` (the job's
command-line overrides) and, if the run got that far, the files the trainer / evaluators write:

* ``eval.json``          {"psnr", "ssim", "steps", "train_time_s", ...}   (its absence = failed)
* ``localization.json``  {"overall": accuracy in [0, 1], "per_level": {...}, ...}  (optional)
* ``segmentation.json``  {"miou": float, "per_level": {...}, ...}                 (optional)

A run without a readable ``eval.json`` (crashed, killed, still running) is listed as failed;
it never stops the others from being collected.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from omegaconf import OmegaConf

from lerf.data.atomic import write_text
from lerf.evaluation.report import markdown_table

# (column title, source file, key (dots reach into nested objects), scale for display, table
# format); one home for what the table and the chart show. Per-level columns exist when the
# labels carry levels (the demo scene: part / object / group).
METRICS = {
    "localization": ("loc. acc. (%)", "localization.json", "overall", 100.0, "{:.1f}"),
    "loc_part": ("loc. part (%)", "localization.json", "per_level.part", 100.0, "{:.1f}"),
    "loc_object": ("loc. object (%)", "localization.json", "per_level.object", 100.0, "{:.1f}"),
    "loc_group": ("loc. group (%)", "localization.json", "per_level.group", 100.0, "{:.1f}"),
    "miou": ("mIoU (%)", "segmentation.json", "miou", 100.0, "{:.1f}"),
    "miou_object": ("mIoU object (%)", "segmentation.json", "per_level.object", 100.0, "{:.1f}"),
    "psnr": ("PSNR (dB)", "eval.json", "psnr", 1.0, "{:.2f}"),
    "ssim": ("SSIM", "eval.json", "ssim", 1.0, "{:.3f}"),
    "steps": ("steps", "eval.json", "steps", 1.0, "{:.0f}"),
    "train_time_s": ("train time (s)", "eval.json", "train_time_s", 1.0, "{:.0f}"),
}
CHART_PANELS = ("loc_part", "loc_object", "loc_group", "miou_object", "psnr")


@dataclass
class RunRecord:
    name: str  # the job's subdir, e.g. "0"
    overrides: list[str]
    failed_reason: str | None  # None when eval.json was read
    metrics: dict[str, float] = field(default_factory=dict)  # keys of METRICS; missing = n/a

    @property
    def failed(self) -> bool:
        return self.failed_reason is not None


def _read_json(path: Path) -> dict | None:
    """The JSON object in ``path``; None if the file is absent; ValueError if it is unreadable."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path.name} is not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path.name} is not a JSON object")
    return data


def read_run(run_dir: Path) -> RunRecord:
    """One job's overrides and metrics; failures are recorded, never raised."""
    overrides_file = run_dir / ".hydra" / "overrides.yaml"
    overrides = [str(o) for o in OmegaConf.load(overrides_file)] if overrides_file.is_file() else []
    record = RunRecord(name=run_dir.name, overrides=overrides, failed_reason=None)
    files: dict[str, dict | None] = {}
    for _, file_name, *_ in METRICS.values():
        if file_name in files:
            continue
        try:
            files[file_name] = _read_json(run_dir / file_name)
        except ValueError as err:
            files[file_name] = None
            if file_name == "eval.json":
                record.failed_reason = str(err)
    if files["eval.json"] is None and record.failed_reason is None:
        failure = run_dir / "failed.txt"  # train.py writes the traceback there in a sweep
        lines = failure.read_text().strip().splitlines() if failure.is_file() else []
        record.failed_reason = lines[-1][:120] if lines else "no eval.json"
    if record.failed:
        return record
    for metric, (_, file_name, key, *_) in METRICS.items():
        value = _nested(files[file_name] or {}, key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            record.metrics[metric] = float(value)
    return record


def _nested(data: dict, key: str):
    """data["a"]["b"] for key "a.b"; None where a step is missing. Example: ({"a": {"b": 1}}, "a.b") -> 1."""
    for step in key.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(step)
    return data


def _job_sort_key(path: Path) -> tuple[int, int, str]:
    return (0, int(path.name), "") if path.name.isdigit() else (1, 0, path.name)


def collect_runs(sweep_dir: str | Path) -> list[RunRecord]:
    """Every job dir of a multirun sweep (numeric name or holding ``.hydra/``), in job order."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"sweep dir {sweep_dir} does not exist")
    job_dirs = [
        p
        for p in sweep_dir.iterdir()
        if p.is_dir() and not p.name.startswith(".") and (p.name.isdigit() or (p / ".hydra").is_dir())
    ]
    if not job_dirs:
        raise FileNotFoundError(f"{sweep_dir} has no job dirs (0/, 1/, ... with .hydra/)")
    return [read_run(p) for p in sorted(job_dirs, key=_job_sort_key)]


def variant_names(records: Sequence[RunRecord]) -> tuple[list[str], list[str]]:
    """Name each run by the overrides that differ between runs; also return the shared ones.

    Example: [["experiment=full", "seed=0"], ["experiment=no_dino", "seed=0"]] ->
    (["experiment=full", "experiment=no_dino"], ["seed=0"]).
    """
    shared = set.intersection(*(set(r.overrides) for r in records)) if len(records) > 1 else set()
    names = [" ".join(o for o in r.overrides if o not in shared) or f"run {r.name}" for r in records]
    common = [o for o in records[0].overrides if o in shared] if records else []
    return names, common


def ablation_table(records: Sequence[RunRecord]) -> str:
    """Markdown: one row per run, one column per metric; failed runs say so."""
    names, common = variant_names(records)
    headers = ["job", "variant", "status"] + [METRICS[m][0] for m in METRICS]
    rows = []
    for record, name in zip(records, names):
        status = f"**failed** ({record.failed_reason})" if record.failed else "ok"
        values = [
            METRICS[m][4].format(record.metrics[m] * METRICS[m][3]) if m in record.metrics else None
            for m in METRICS
        ]
        rows.append([record.name, name, status] + values)
    shared = f"Overrides shared by all runs: `{' '.join(common)}`\n\n" if common else ""
    return "# Ablations\n\n" + shared + markdown_table(headers, rows) + "\n"


def ablation_chart(records: Sequence[RunRecord], png_path: str | Path) -> None:
    """One panel per metric in ``CHART_PANELS``, one bar per run; failed runs get a hatched
    empty bar labelled "failed", runs without that metric are labelled "n/a"."""
    names, _ = variant_names(records)
    fig = Figure(figsize=(4 * len(CHART_PANELS), 1.5 + 0.4 * len(records)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(CHART_PANELS), sharey=True)
    positions = list(range(len(records)))
    for ax, metric in zip(axes, CHART_PANELS):
        title, _, _, scale, fmt = METRICS[metric]
        values = [r.metrics.get(metric) for r in records]
        known = [v * scale for v in values if v is not None]
        span = max(known, default=1.0) or 1.0
        for y, record, value in zip(positions, records, values):
            if record.failed:
                ax.barh(y, span, fill=False, hatch="//", edgecolor="0.6")
                ax.text(span / 2, y, "failed", ha="center", va="center", color="0.3")
            elif value is None:
                ax.text(0, y, " n/a", va="center", color="0.4")
            else:
                ax.barh(y, value * scale, color="tab:blue")
                ax.text(value * scale, y, " " + fmt.format(value * scale), va="center", fontsize=8)
        ax.set_title(title)
        ax.set_xlim(0, span * 1.25)
    axes[0].set_yticks(positions, names)
    axes[0].invert_yaxis()  # job 0 on top, like the table
    Path(png_path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, dpi=100)


def summarize_sweep(sweep_dir: str | Path, out_dir: str | Path | None = None) -> tuple[Path, Path]:
    """Collect ``sweep_dir`` and write ``ablations.md`` and ``ablations.png`` into ``out_dir``
    (default: the sweep dir itself). Returns both paths."""
    records = collect_runs(sweep_dir)
    out = Path(out_dir) if out_dir is not None else Path(sweep_dir)
    out.mkdir(parents=True, exist_ok=True)
    table_path, png_path = out / "ablations.md", out / "ablations.png"
    write_text(table_path, ablation_table(records))
    ablation_chart(records, png_path)
    return table_path, png_path
