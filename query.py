"""Ask a trained run questions in words: relevancy maps, a camera-path video, a 3D point query.

    python query.py run=outputs/demo/<date> prompt="red mug"
    python query.py run=... prompt='[red mug, blue teapot]' views=eval video=true ply=true

Reads the run's checkpoint only; writes under <run>/queries/<prompt>/ (or out=<dir>) and never
replaces earlier outputs unless overwrite=true.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from omegaconf import MISSING
from tqdm import tqdm

from lerf.cli import parse_args, run
from lerf.data.camera_path import interpolate_path
from lerf.query.images import overlay, to_uint8
from lerf.query.outputs import check_writable, prompt_dirname, save_query, write_ply, write_video
from lerf.query.points3d import PLY_THRESHOLD, relevant_points
from lerf.query.relevancy import validate_prompt
from lerf.query.run import load_run, select_views

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
    items = [value] if isinstance(value, str) else list(value)
    try:
        return [validate_prompt(str(p) if p is not None else "") for p in items]
    except ValueError as err:
        raise SystemExit(str(err)) from None


def run_video(engine, loaded, prompt: str, views: list[int], out_dir: Path, args: QueryArgs) -> Path:
    path = interpolate_path(loaded.scene.cameras, views if len(views) > 1 else loaded.scene.train_idx[:8],
                            args.video_frames)
    target = out_dir / "path.mp4"
    check_writable([target, target.with_suffix(".gif")], args.overwrite)
    frames = []
    for i in tqdm(range(len(path)), desc=f"video '{prompt}'", leave=False):
        result = engine.query(prompt, path, i, key=("path", i))
        frames.append(to_uint8(overlay(engine.view(path, i, key=("path", i)).rgb, result.relevancy)))
    return write_video(target, frames, fps=12)


def run_ply(engine, loaded, prompt: str, views: list[int], out_dir: Path, args: QueryArgs) -> Path:
    scene = loaded.scene
    target = out_dir / "points.ply"
    check_writable([target], args.overwrite)
    # The same visibility grid as the 2D maps (LERF §3.4).
    grid = loaded.visibility(args.chunk)
    found = relevant_points(engine, scene.cameras, prompt, views, grid, args.ply_threshold)
    world = scene.to_world(found.points)
    write_ply(target, world, found.colors, found.values)
    log.info("'%s': %d of %d relevant points seen by >= %d training views -> %s", prompt, world.shape[0],
             found.candidates, grid.min_views, target)
    return target


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s")
    args = parse_args(QueryArgs, argv, usage=__doc__)
    prompts = prompts_of(args.prompt)
    loaded = load_run(args.run, args.device)
    engine = loaded.engine(args.chunk)
    views = select_views(args.views, loaded.scene)
    out_root = Path(args.out) if args.out else loaded.run_dir / "queries"
    summaries: dict[str, list[dict]] = {p: [] for p in prompts}
    # Views outside, prompts inside: each view is rendered once and every prompt reuses it.
    for v in tqdm(views, desc="views"):
        name = Path(loaded.scene.frame_names[v]).stem
        render = engine.view(loaded.scene.cameras, v)
        for prompt in prompts:
            result = engine.query(prompt, loaded.scene.cameras, v)
            out_dir = out_root / prompt_dirname(prompt)
            summaries[prompt].append(save_query(result, render, out_dir, name, args.overwrite))
    for prompt in prompts:
        out_dir = out_root / prompt_dirname(prompt)
        for s in summaries[prompt]:
            log.info("'%s' %s: scale %.2f m, peak %s (relevancy %.3f)", prompt, s["view"], s["scale_m"],
                     s["peak_xy"], s["peak_relevancy"])
        if args.video:
            log.info("video: %s", run_video(engine, loaded, prompt, views, out_dir, args))
        if args.ply:
            run_ply(engine, loaded, prompt, views, out_dir, args)
        (out_dir / "summary.json").write_text(json.dumps(summaries[prompt], indent=2))

if __name__ == "__main__":
    run(main)
