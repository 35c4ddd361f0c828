"""Pictures in TensorBoard while training: one held-out view (RGB, ground truth, depth, relevancy)."""
from __future__ import annotations

from lerf.data.scene import SceneData
from lerf.model import LerfModel
from lerf.query.engine import QueryEngine
from lerf.query.images import colorize
from lerf.query.render import render_view


# The relevancy picture runs the CLIP head at every searched scale for every pixel: at the demo's
# 256 px that cost ~20 s per picture on 2 CPU cores, most of the picture's time. A progress
# picture needs no more than this many pixels on its long side (RGB and depth stay full size).
RELEVANCY_MAX_PX = 128


def tensorboard_images(writer, model: LerfModel, scene: SceneData, supervision, cfg, step: int) -> None:
    """One held-out view in TensorBoard: RGB, ground truth, depth (and relevancy if configured)."""
    model.eval()
    cam = scene.eval_idx[0]
    chunk = cfg.trainer.eval_chunk
    rendered = render_view(model, scene.cameras, cam, chunk)
    writer.add_image("eval/rgb", rendered["rgb"].clamp(0, 1), step, dataformats="HWC")
    writer.add_image("eval/gt", scene.image_float(cam), step, dataformats="HWC")
    writer.add_image("eval/depth", colorize(rendered["depth_m"]), step, dataformats="HWC")
    prompt = cfg.relevancy.tensorboard_prompt
    if supervision is not None and prompt and model.language is not None:
        # The query's exact path and scale search, without the visibility filter (training has not
        # built the grid yet).
        engine = QueryEngine(model, supervision.text_encoder, cfg.relevancy, chunk)
        small = scene.cameras.subset([cam]).within(RELEVANCY_MAX_PX)
        relevancy = engine.query_exact(prompt, small, 0).relevancy
        writer.add_image(f"eval/relevancy/{prompt}", colorize(relevancy, vmin=0.0, vmax=1.0), step,
                         dataformats="HWC")

