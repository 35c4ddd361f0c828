"""Did the field learn what it was told? Field against supervision on each named part (demo only).

A missed part query has two possible causes: the supervision never said it (the oracle,
lerf/demo/oracle.py, answers that on held-out views), or the field was told and did not
learn it. This answers the second on the training pixels themselves. For every named part, up
to `pixels` of its training pixels are drawn (seeded) and asked at fixed physical scales s:

* field: the ray's rendered CLIP embedding with every language sample at scale s, exactly as a
  query asks it (top-k samples of the rendered weights, composited, unit norm);
* supervision: that training image's CLIP pyramid at the crop whose physical side at the
  pixel's depth is s (f = s / (metres per pixel x image height): the oracle's rule, the inverse
  of the training scale), where f lies inside the pyramid.

Both are scored with the part's own name against the canonical phrases (LERF relevancy). A part
whose supervision scores high at some scale while the field stays low there was told and not
learned. Example (demo seed 1, 2000 steps): "teapot lid" field 0.94 / supervision 0.94 at
4.5-6.5 cm, "teapot spout" field 0.08 / supervision 0.58 at the same scales.

The pyramid of the training images is rebuilt in memory with the run's encoder (seconds with the
reference encoder); nothing in the run or the feature cache is written.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

from lerf.config import TrainConfig
from lerf.data.atomic import write_json, write_text
from lerf.data.cameras import camera_rays
from lerf.data.units import crop_frac_for_scale, depth_m_to_ray_t, metres_per_pixel
from lerf.encoders.factory import pyramid_inputs
from lerf.encoders.pyramid import ClipPyramid, build_clip_pyramid
from lerf.query.outputs import check_writable
from lerf.query.relevancy import TextEmbeddings, relevancy
from lerf.query.run import load_run

# Part sizes on the demo are 8-13 cm: bins from well below ALPHA x size to above the object size.
DEFAULT_SCALES_M = (0.03, 0.045, 0.065, 0.09, 0.13, 0.19, 0.27)
VOXEL_M = 0.015  # the point mean's voxel: about the thinnest named part's radius (a mug handle's tube is 0.75 cm)


def named_parts(hierarchy: dict) -> dict[str, list[int]]:
    """Part name -> every part id carrying it (two mugs share "mug handle").

    Example: {"parts": {"3": {"name": "mug handle"}, "4": {"name": None}, "16": {"name": "mug handle"}}}
    -> {"mug handle": [3, 16]}.
    """
    out: dict[str, list[int]] = {}
    for pid, part in sorted(hierarchy["parts"].items(), key=lambda kv: int(kv[0])):
        if part.get("name"):
            out.setdefault(part["name"], []).append(int(pid))
    return out


def draw_pixels(part_ids: Int[Tensor, "n h w"], ids: Sequence[int], count: int, generator: torch.Generator
                ) -> tuple[Int[Tensor, " m"], Int[Tensor, " m"], Int[Tensor, " m"]]:
    """Up to `count` pixels (frame position, row, column) whose part id is in `ids`, drawn
    without replacement."""
    frame, row, col = torch.nonzero(torch.isin(part_ids, torch.tensor(list(ids))), as_tuple=True)
    pick = torch.randperm(len(frame), generator=generator)[:count]
    return frame[pick], row[pick], col[pick]


@torch.no_grad()
def field_relevancy(model, cameras, cams: Int[Tensor, " m"], u: Float[Tensor, " m"], v: Float[Tensor, " m"],
                    scales_m: Sequence[float], query: Float[Tensor, " d"], texts: TextEmbeddings,
                    temperature: float, chunk: int = 4096) -> Float[Tensor, "s m"]:
    """Relevancy of the field's rendered embedding of each pixel's ray, at each scale."""
    cols = []
    for i in range(0, len(u), chunk):
        o, d, _ = camera_rays(cameras, cams[i:i + chunk], u[i:i + chunk], v[i:i + chunk])
        out = model(o, d)
        pos, w, _ = model.language_samples(out, model.cfg.language.samples_per_ray)
        embeds = model.clip_at_scales(pos, w, torch.tensor(list(scales_m)))
        cols.append(relevancy(embeds, query, texts.canon, temperature))
    return torch.cat(cols, dim=1)


def crop_frac_at(pyramid: ClipPyramid, px_m: Float[Tensor, "n h w"], frame: Int[Tensor, " m"],
                 row: Int[Tensor, " m"], col: Int[Tensor, " m"], scale_m: float
                 ) -> tuple[Float[Tensor, " m"], Bool[Tensor, " m"]]:
    """Crop fraction whose physical side at each pixel's depth is `scale_m`, and whether it lies
    inside the pyramid (background: infinite depth, never inside)."""
    frac = crop_frac_for_scale(scale_m, px_m[frame, row, col], px_m.shape[1])
    return frac, torch.isfinite(frac) & (frac >= pyramid.min_frac) & (frac <= pyramid.max_frac)


def supervision_relevancy(pyramid: ClipPyramid, px_m: Float[Tensor, "n h w"], frame: Int[Tensor, " m"],
                          row: Int[Tensor, " m"], col: Int[Tensor, " m"], scales_m: Sequence[float],
                          query: Float[Tensor, " d"], texts: TextEmbeddings, temperature: float
                          ) -> tuple[Float[Tensor, "s m"], Bool[Tensor, "s m"]]:
    """Relevancy of the pyramid's embedding at the crop of physical side s, and where that crop
    lies inside the pyramid's range."""
    u, v = col.float() + 0.5, row.float() + 0.5
    rels, valid = [], []
    for s in scales_m:
        frac, ok = crop_frac_at(pyramid, px_m, frame, row, col, s)
        looked = F.normalize(pyramid.lookup(frame, u, v, torch.nan_to_num(frac, posinf=0.0).float()), dim=-1)
        rels.append(relevancy(looked, query, texts.canon, temperature))
        valid.append(ok)
    return torch.stack(rels), torch.stack(valid)


def point_mean_relevancy(pyramid: ClipPyramid, px_m: Float[Tensor, "n h w"], points: Float[Tensor, "m 3"],
                         frame: Int[Tensor, " m"], row: Int[Tensor, " m"], col: Int[Tensor, " m"],
                         scales_m: Sequence[float], query: Float[Tensor, " d"], canon: Float[Tensor, "c d"],
                         temperature: float, voxel: float, min_pixels: int = 5) -> list[Optional[float]]:
    """Per scale: relevancy of the MEAN supervision target over each voxel of side `voxel` (the
    points' units), averaged over the pixels of voxels with >= `min_pixels` valid pixels.

    A field fitted to its targets in the least-squares sense converges, at a 3D point and a scale,
    to the mean of the targets every view gives there; this is the relevancy of that mean. Views
    that disagree (a thin part's pixels fall in crops dominated by the body in some views) pull
    it towards 0.5 even where the per-pixel mean ("supervision") is higher."""
    _, voxel_of = torch.unique(torch.floor(points / voxel).long(), dim=0, return_inverse=True)
    n_vox = int(voxel_of.max()) + 1 if len(voxel_of) else 0
    out = []
    for s in scales_m:
        frac, ok = crop_frac_at(pyramid, px_m, frame, row, col, s)
        if not bool(ok.any()):
            out.append(None)
            continue
        target = F.normalize(pyramid.lookup(frame[ok], col[ok].float() + 0.5, row[ok].float() + 0.5,
                                            frac[ok].float()), dim=-1)
        sums = torch.zeros(n_vox, target.shape[1]).index_add_(0, voxel_of[ok], target)
        count = torch.bincount(voxel_of[ok], minlength=n_vox)
        keep = count >= min_pixels
        if not bool(keep.any()):
            out.append(None)
            continue
        rel = relevancy(F.normalize(sums[keep], dim=-1), query, canon, temperature)
        weight = count[keep].float()
        out.append(float((rel * weight).sum() / weight.sum()))
    return out


def surface_points(scene, frames: Int[Tensor, " m"], row: Int[Tensor, " m"], col: Int[Tensor, " m"]
                   ) -> Float[Tensor, "m 3"]:
    """World points (normalised units) of pixels of scene images `frames`, from the true depths."""
    o, d, z_per_t = camera_rays(scene.cameras, frames, col.float() + 0.5, row.float() + 0.5)
    t = depth_m_to_ray_t(scene.demo.depth_z_m[frames, row, col], z_per_t, scene.scale_factor)
    return o + d * t[:, None]


def training_pyramid(encoder, scene, cfg: TrainConfig) -> tuple[ClipPyramid, Float[Tensor, "n h w"]]:
    """The run's CLIP pyramid of its training images, in memory, and their metres per pixel."""
    if scene.demo is None or scene.demo.part_ids is None or scene.demo.depth_z_m is None:
        raise ValueError(f"the part fit needs the demo scene's part ids, depths and hierarchy; {scene.root} has none")
    idx = list(scene.train_idx)
    px_m = metres_per_pixel(scene.demo.depth_z_m[idx], scene.cameras.fy_px[idx])
    inputs = pyramid_inputs(cfg, scene.images[idx], scene.demo.part_ids[idx], encoder, px_m)
    pyramid = build_clip_pyramid(inputs, batch_size=cfg.encoder.batch_size, progress=False)
    return pyramid, px_m


def part_fit(model, scene, encoder, cfg: TrainConfig, scales_m: Sequence[float] = DEFAULT_SCALES_M,
             pixels: int = 2000, seed: int = 0) -> dict:
    """Per named part and scale: mean field and supervision relevancy over the drawn training
    pixels where the scale's crop lies inside the pyramid (`n`)."""
    pyramid, px_m = training_pyramid(encoder, scene, cfg)
    texts = TextEmbeddings(encoder, cfg.relevancy)
    train = torch.tensor(list(scene.train_idx))
    generator = torch.Generator().manual_seed(seed)
    parts = {}
    for name, ids in named_parts(scene.demo.hierarchy).items():
        frame, row, col = draw_pixels(scene.demo.part_ids[train], ids, pixels, generator)
        query = texts.embed([name])[0]
        field = field_relevancy(model, scene.cameras, train[frame], col.float() + 0.5, row.float() + 0.5, scales_m,
                                query, texts, cfg.relevancy.temperature)
        target, valid = supervision_relevancy(pyramid, px_m, frame, row, col, scales_m, query, texts,
                                              cfg.relevancy.temperature)
        # The point mean reads every training pixel of the part (a voxel needs several views).
        a_frame, a_row, a_col = draw_pixels(scene.demo.part_ids[train], ids, scene.demo.part_ids[train].numel(), generator)
        point = point_mean_relevancy(pyramid, px_m, surface_points(scene, train[a_frame], a_row, a_col),
                                     a_frame, a_row, a_col, scales_m, query, texts.canon, cfg.relevancy.temperature,
                                     voxel=VOXEL_M * scene.scale_factor)
        parts[name] = [{"scale_m": s, "n": int(ok.sum()),
                        "field": float(f[ok].mean()) if ok.any() else None,
                        "supervision": float(t[ok].mean()) if ok.any() else None,
                        "point_mean": pm}
                       for s, f, t, ok, pm in zip(scales_m, field, target, valid, point)]
    return {"pixels_per_part": pixels, "seed": seed, "scales_m": list(scales_m), "voxel_m": VOXEL_M,
            "parts": parts}


def format_part_fit(result: dict) -> str:
    """Markdown: one row per part, "field / supervision / point mean" per scale ("-" where no
    crop fits)."""
    head = "| part | " + " | ".join(f"{100 * s:g} cm" for s in result["scales_m"]) + " |"
    lines = [head, "|---" * (len(result["scales_m"]) + 1) + "|"]
    for name, cells in result["parts"].items():
        row = [f"{c['field']:.2f} / {c['supervision']:.2f} / " + (f"{c['point_mean']:.2f}" if c["point_mean"] is not None else "-")
               if c["n"] else "-" for c in cells]
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    return ("Mean relevancy of the part's name on its training pixels: field / supervision / point mean (the "
            f"relevancy of the mean target over each {100 * result['voxel_m']:g} cm voxel of the part, all views: "
            "what a least-squares field converges to).\n\n" + "\n".join(lines) + "\n")


def write_part_fit(result: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "part_fit.json", result)
    write_text(out_dir / "part_fit.md", format_part_fit(result))


def part_fit_for_run(run_dir: str | Path, out_dir: Optional[str | Path] = None, pixels: int = 2000, seed: int = 0,
                     overwrite: bool = False) -> dict:
    """part_fit of a trained run, written to out_dir (default: the run dir) as part_fit.json/.md;
    an earlier report there is kept unless overwrite."""
    if pixels < 1:
        raise ValueError(f"pixels must be >= 1, got {pixels}")
    loaded = load_run(run_dir, "cpu")
    out = Path(out_dir) if out_dir else loaded.run_dir
    check_writable([out / "part_fit.json", out / "part_fit.md"], overwrite)
    result = part_fit(loaded.model, loaded.scene, loaded.text_encoder(), loaded.cfg, pixels=pixels, seed=seed)
    result["run"], result["step"] = str(loaded.run_dir), loaded.step
    write_part_fit(result, out)
    return result
