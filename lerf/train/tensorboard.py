"""Pictures in TensorBoard while training: one held-out view (RGB, ground truth, depth, relevancy)."""
from __future__ import annotations

from lerf.data.scene import SceneData
from lerf.model import LerfModel
from lerf.query.images import colorize
from lerf.query.relevancy import relevancy_renderer
from lerf.query.render import render_view


def tensorboard_images(writer, model: LerfModel, scene: SceneData, supervision, cfg, step: int) -> None:
    """One held-out view in TensorBoard: RGB, ground truth, depth (and relevancy if configured)."""
    model.eval()
    cam = scene.eval_idx[0]
    lang = None
    prompt = cfg.relevancy.tensorboard_prompt
    if supervision is not None and prompt and model.language is not None:
        lang = relevancy_renderer(model, supervision.text_encoder, prompt, cfg.relevancy)
    rendered = render_view(model, scene.cameras, cam, cfg.trainer.eval_chunk, extras=lang)
    writer.add_image("eval/rgb", rendered["rgb"].clamp(0, 1), step, dataformats="HWC")
    writer.add_image("eval/gt", scene.image_float(cam), step, dataformats="HWC")
    writer.add_image("eval/depth", colorize(rendered["depth_m"]), step, dataformats="HWC")
    if "relevancy" in rendered:
        writer.add_image(f"eval/relevancy/{prompt}", colorize(rendered["relevancy"], vmin=0.0, vmax=1.0), step,
                         dataformats="HWC")
