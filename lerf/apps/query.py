"""Ask a trained run questions in words: relevancy maps, a camera-path video, a 3D point query.

    lerf-query run=outputs/demo/<date> prompt="red mug"        (or: python query.py ...)
    python query.py run=... prompt='[red mug, blue teapot]' views=eval video=true ply=true

Reads the run's checkpoint only; writes under <run>/queries/<prompt>/ (or out=<dir>; prompts other
than plain words get a short hash in the folder name) and never replaces earlier outputs unless
overwrite=true. Prompts are checked before anything is rendered; each JSON records the prompt
text and the checkpoint step that answered it. A prompt folder is locked while it is written
(`<folder>/.query.lock`): a second query, or the viewer's Save, into it meanwhile is refused.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from omegaconf import MISSING
from tqdm import tqdm

from lerf.apps.cli import parse_args, run
from lerf.query.camera_path import interpolate_path
from lerf.query.images import overlay, to_uint8
from lerf.query.outputs import (check_writable, output_paths, prompt_dirname, prompt_folders_locked, save_query,
                               write_ply, write_prompt_summary, write_video)
from lerf.query.points3d import PLY_THRESHOLD
from lerf.query.relevancy import validate_prompt
from lerf.query.run import LoadedRun, load_run, select_views

log = logging.getLogger("query")


@dataclass
class QueryArgs:
    run: str = MISSING
    prompt: Any = MISSING  # one text, or a list of texts
    views: str = "eval"  # eval | train | all | comma-separated frame indices, e.g. "0,8,16"
    out: Optional[str] = None  # default: <run>/queries
    device: str = "auto"
    chunk: int = 4096
    overwrite: bool = False
    video: bool = False  # render a camera path through the selected views
    video_frames: int = 48
    ply: bool = False  # 3D query: relevant points kept only where the run's visibility grid says enough
    ply_threshold: float = PLY_THRESHOLD  # training views (relevancy.visibility_min_views) saw them


def prompts_of(value: Any) -> list[str]:
    """The validated, de-duplicated prompts of `prompt=` (one text or a list), before any rendering."""
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if not items:
        raise SystemExit("prompt=[] holds no prompt: give a text such as prompt='red mug'")
    try:
        return list(dict.fromkeys(validate_prompt(p) for p in items))
    except ValueError as err:
        raise SystemExit(str(err)) from None


def planned_outputs(prompts: list[str], view_names: list[str], out_root: Path, args: QueryArgs) -> list[Path]:
    """Every file this query will write, so that an existing one stops it before any rendering."""
    paths = []
    for prompt in prompts:
        out_dir = out_root / prompt_dirname(prompt)
        paths += [p for name in view_names for p in output_paths(out_dir, name).values()]
        paths.append(out_dir / "summary.json")
        paths += [out_dir / "path.mp4", out_dir / "path.gif"] if args.video else []
        paths += [out_dir / "points.ply"] if args.ply else []
    return paths


def run_video(trained: LoadedRun, prompt: str, views: list[int], out_dir: Path, args: QueryArgs) -> Path:
    path = interpolate_path(trained.scene.cameras, views if len(views) > 1 else trained.scene.train_idx[:8],
                            args.video_frames)
    target = out_dir / "path.mp4"
    check_writable([target, target.with_suffix(".gif")], args.overwrite)
    frames = []
    for i in tqdm(range(len(path)), desc=f"video '{prompt}'", leave=False):
        camera = path.subset([i])
        result = trained.query(prompt, camera)
        frames.append(to_uint8(overlay(trained.render(camera, language=True).rgb, result.relevancy)))
    return write_video(target, frames, fps=12)


def run_ply(trained: LoadedRun, prompt: str, views: list[int], out_dir: Path, args: QueryArgs) -> Path:
    target = out_dir / "points.ply"
    check_writable([target], args.overwrite)
    # The same visibility grid as the 2D maps (LERF §3.4).
    found = trained.points(prompt, views, args.ply_threshold)
    write_ply(target, found.points, found.colors, found.values)
    log.info("'%s': %d of %d relevant points seen by >= %d training views -> %s", prompt, found.points.shape[0],
             found.candidates, trained.visibility().min_views, target)
    return target


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s")
    args = parse_args(QueryArgs, argv, usage=__doc__)
    prompts = prompts_of(args.prompt)
    trained = load_run(args.run, args.device, args.chunk)
    views = select_views(args.views, trained.scene)
    names = {v: Path(trained.scene.frame_names[v]).stem for v in views}
    out_root = Path(args.out) if args.out else trained.run_dir / "queries"
    planned = planned_outputs(prompts, list(names.values()), out_root, args)
    check_writable(planned, args.overwrite)
    with prompt_folders_locked([out_root / prompt_dirname(p) for p in prompts]):
        check_writable(planned, args.overwrite)  # again, locked: another query may have finished meanwhile
        answer(trained, prompts, views, names, out_root, args)


def answer(trained: LoadedRun, prompts: list[str], views: list[int], names: dict[int, str], out_root: Path,
           args: QueryArgs) -> None:
    """Render every view once, answer every prompt on it and write the files (prompt folders locked)."""
    summaries: dict[str, list[dict]] = {p: [] for p in prompts}
    # Views outside, prompts inside: each view is rendered once and every prompt reuses it.
    for v in tqdm(views, desc="views"):
        render = trained.render(v, language=True)
        for prompt in prompts:
            result = trained.query(prompt, v)
            out_dir = out_root / prompt_dirname(prompt)
            summaries[prompt].append(save_query(result, render, out_dir, names[v], args.overwrite, trained.step))
    for prompt in prompts:
        out_dir = out_root / prompt_dirname(prompt)
        for s in summaries[prompt]:
            log.info("'%s' %s: scale %.2f m, peak %s (relevancy %.3f)", prompt, s["view"], s["scale_m"],
                     s["peak_xy"], s["peak_relevancy"])
        if args.video:
            log.info("video: %s", run_video(trained, prompt, views, out_dir, args))
        if args.ply:
            run_ply(trained, prompt, views, out_dir, args)
        write_prompt_summary(out_dir, summaries[prompt])
        log.info("'%s' (checkpoint step %d) -> %s", prompt, trained.step, out_dir)


def cli() -> None:
    """The console script: user errors as one line, exit status 2 (lerf.apps.cli.run)."""
    run(main)


if __name__ == "__main__":
    cli()
