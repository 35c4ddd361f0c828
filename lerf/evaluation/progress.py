"""Progress pictures of a run in training: one held-out view's RGB, ground truth, depth and (with
`relevancy.tensorboard_prompt`) relevancy. The training entry point hands `progress_pictures` to
the trainer, which writes whatever it returns to TensorBoard every `trainer.image_every` steps;
training itself never imports the query package."""
from __future__ import annotations

from typing import Optional

from jaxtyping import Float
from torch import Tensor

from lerf.config import TrainConfig
from lerf.data.scene import SceneData
from lerf.model import LerfModel
from lerf.model.render_view import render_view
from lerf.query.engine import QueryEngine
from lerf.query.images import colorize

# The relevancy picture runs the CLIP head at every searched scale for every pixel: at the demo's
# 256 px that cost ~20 s per picture on 2 CPU cores, most of the picture's time. A progress
# picture needs no more than this many pixels on its long side (RGB and depth stay full size).
RELEVANCY_MAX_PX = 128


def progress_pictures(model: LerfModel, scene: SceneData, text_encoder: Optional[object], cfg: TrainConfig
                      ) -> dict[str, Float[Tensor, "h w 3"]]:
    """TensorBoard tag -> picture of the scene's first held-out view, in the model's eval mode."""
    model.eval()
    cam = scene.eval_idx[0]
    chunk = cfg.trainer.eval_chunk
    rendered = render_view(model, scene.cameras, cam, chunk)
    pictures = {"eval/rgb": rendered["rgb"].clamp(0, 1), "eval/gt": scene.image_float(cam),
                "eval/depth": colorize(rendered["depth_m"])}
    prompt = cfg.relevancy.tensorboard_prompt
    if text_encoder is not None and prompt and model.language is not None:
        # The query's exact path and scale search, without the visibility filter (training has not
        # built the grid yet).
        engine = QueryEngine(model, text_encoder, cfg.relevancy, chunk)
        small = scene.cameras.subset([cam]).within(RELEVANCY_MAX_PX)
        relevancy = engine.query_exact(prompt, small, 0).relevancy
        pictures[f"eval/relevancy/{prompt}"] = colorize(relevancy, vmin=0.0, vmax=1.0)
    return pictures
