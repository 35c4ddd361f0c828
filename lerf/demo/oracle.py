"""The instrument's reference: localization scored on the supervision itself (demo scene only).

A trained field can at best reproduce its CLIP pyramid. This scores the pyramid directly: for a
labelled view, the pyramid of that very image is built with the run's CLIP encoder (the
reference encoder reads the view's part ids and depths), and at every searched scale s each pixel
takes the pyramid's embedding at crop fraction f = s / (metres per pixel x image height) — the
crop whose physical side at that pixel's depth is s, the inverse of the training scale rule.
Pixels where f falls outside the pyramid's crop range, or with no surface, score 0. Relevancy,
scale choice and the localization rule are the ones a trained run is scored with, so the
difference between this and a run's localization.json shows what distillation loses; a query
the oracle misses is one the supervision of that view cannot answer. It is not a strict upper
bound: the field is fitted to every training view at once, and averaging views can answer what
one view's crops cannot (on the demo the field beats the oracle on groups).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import Tensor
from tqdm import tqdm

from lerf.config import TrainConfig
from lerf.data.units import crop_frac_for_scale, metres_per_pixel
from lerf.encoders.factory import pyramid_inputs
from lerf.encoders.pyramid import build_clip_pyramid
from lerf.evaluation.localization import localize, summarize_localization
from lerf.evaluation.report import write_report
from lerf.evaluation.run_eval import labelled_views
from lerf.query.relevancy import TextEmbeddings, relevancy, scale_values, search_scale
from lerf.query.run import load_run


def supervision_embeddings(encoder, scene, cfg: TrainConfig, cam: int, scales_m: Float[Tensor, " s"]
                           ) -> tuple[Float[Tensor, "s n d"], Bool[Tensor, "s n"]]:
    """Unit pyramid embeddings of every pixel of frame `cam` at each physical scale, and where
    they are defined (crop fraction inside the pyramid's range, a surface under the pixel)."""
    if scene.demo is None or scene.demo.part_ids is None or scene.demo.depth_z_m is None:
        raise ValueError(f"the oracle needs the demo scene's part ids and depths; {scene.root} has none")
    h, w = scene.height, scene.width
    px_m = metres_per_pixel(scene.demo.depth_z_m[[cam]], scene.cameras.fy_px[[cam]])[0]
    inputs = pyramid_inputs(cfg, scene.images[[cam]], scene.demo.part_ids[[cam]], encoder, px_m[None])
    pyramid = build_clip_pyramid(inputs, batch_size=cfg.encoder.batch_size, progress=False)
    v, u = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    image = torch.zeros(h * w, dtype=torch.long)
    embeds, valid = [], []
    for s in scales_m.tolist():
        frac = crop_frac_for_scale(s, px_m, h).reshape(-1)
        ok = torch.isfinite(frac) & (frac >= pyramid.min_frac) & (frac <= pyramid.max_frac)
        looked = pyramid.lookup(image, u.reshape(-1), v.reshape(-1), torch.nan_to_num(frac, posinf=0.0).float())
        embeds.append(F.normalize(looked, dim=-1) * ok[:, None])
        valid.append(ok)
    return torch.stack(embeds), torch.stack(valid)


def evaluate_oracle(cfg: TrainConfig, scene, encoder, out_dir: Path, labels: Optional[str] = None) -> dict:
    """LERF-protocol localization of the supervision itself on every labelled view; writes
    oracle_localization.json / .md into `out_dir` and returns the summary."""
    texts = TextEmbeddings(encoder, cfg.relevancy)
    scales = scale_values(cfg.relevancy)
    h, w = scene.height, scene.width
    results = []
    for frame, cam in tqdm(labelled_views(scene, labels), desc="oracle", leave=False):
        embeds, _ = supervision_embeddings(encoder, scene, cfg, cam, scales)
        for category, label in frame.categories.items():
            query = texts.embed([category])[0]
            maps = relevancy(embeds, query, texts.canon, cfg.relevancy.temperature,
                             cfg.relevancy.canonical_reduce).reshape(-1, h, w)
            results.append(localize(search_scale(category, maps, scales).relevancy, label.boxes, protocol="lerf", query=category,
                                    view=Path(frame.frame_name).stem, scene=cfg.scene.name, query_level=label.level))
    summary = summarize_localization(results)
    summary["protocol"], summary["input"] = "lerf", "the CLIP pyramid of each labelled view (no field)"
    write_report(summary, out_dir / "oracle_localization.json", out_dir / "oracle_localization.md")
    return summary


def oracle_for_run(run_dir: str | Path, out_dir: Optional[str | Path] = None, labels: Optional[str] = None) -> dict:
    """The oracle of a trained run's scene, with the run's own encoder settings; the report goes to
    out_dir (default: the run dir)."""
    loaded = load_run(run_dir, "cpu")
    out = Path(out_dir) if out_dir else loaded.run_dir
    return evaluate_oracle(loaded.cfg, loaded.scene, loaded.text_encoder(), out, labels)
