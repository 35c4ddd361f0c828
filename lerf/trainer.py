"""The training loop: read top to bottom as load config → data → model → loop → save."""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import torch
from omegaconf import DictConfig, OmegaConf

from lerf.config import TrainConfig, to_plain, to_typed
from tqdm import tqdm

from lerf import checkpoint as ckpt
from lerf.build import build_model, resolve_device, set_threads
from lerf.data.scene import SceneData, load_scene
from lerf.model import LerfModel, SceneGeometry
from lerf.optim import build_optimizer
from lerf.provenance import write_provenance
from lerf.rays import RayBatch, RaySampler
from lerf.render.losses import distortion_loss, interlevel_loss, rgb_loss
from lerf.supervision import LanguageSupervision, build_supervision, language_losses
from lerf.evaluation.language_eval import evaluate_localization, evaluate_segmentation
from lerf.query_engine import QueryEngine
from lerf.view_eval import evaluate_views, tensorboard_images

log = logging.getLogger(__name__)


class RunDirError(RuntimeError):
    """A run directory would be overwritten, or a resume target is unusable."""


def _psnr(mse: float) -> float:
    return -10.0 * math.log10(max(mse, 1e-10))


def compute_losses(model: LerfModel, batch: RayBatch, step: int, generator: torch.Generator,
                   supervision: Optional[LanguageSupervision]) -> tuple[torch.Tensor, dict[str, float]]:
    """Forward one batch of rays and sum every loss; returns the total and scalar logs."""
    cfg = model.cfg
    out = model(batch.origins, batch.dirs, step=step, jitter=True, generator=generator)
    loss_rgb = rgb_loss(out["rgb"], batch.rgb)
    loss_inter = sum(interlevel_loss(out["bins"], out["weights"], b, w)
                     for b, w in zip(out["prop_bins"], out["prop_weights"]))
    loss_dist = distortion_loss(out["bins"], out["weights"])
    total = loss_rgb + cfg.interlevel_weight * loss_inter + cfg.distortion_weight * loss_dist
    logs = {"loss/rgb": loss_rgb.item(), "loss/interlevel": float(loss_inter.detach()) if torch.is_tensor(loss_inter) else float(loss_inter), "loss/distortion": loss_dist.item(),
            "psnr": _psnr(loss_rgb.item())}
    if supervision is not None and model.language is not None:
        lang_total, lang_logs = language_losses(model, out, batch, supervision, generator)
        total = total + lang_total
        logs.update(lang_logs)
    logs["loss/total"] = total.item()
    return total, logs


def prepare_run_dir(run_dir: Path, resume: bool) -> None:
    """Refuse to train over an existing run unless asked to resume it."""
    existing = ckpt.checkpoint_path(run_dir)
    if existing.exists() and not resume:
        raise RunDirError(f"{run_dir} already holds a run ({existing}); pass resume={run_dir} to continue it, "
                          "or choose another hydra.run.dir. Nothing was overwritten.")


def _save(run_dir, model, optimizer, scheduler, step, generator, cfg: TrainConfig, geometry, dims,
          train_time_s: float) -> None:
    ckpt.save_atomic({"train_time_s": train_time_s,
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "step": step, "rng": ckpt.rng_state(generator), "config": to_plain(cfg),
        "geometry": asdict(geometry), "dims": dims,
    }, ckpt.checkpoint_path(run_dir))


def _keep_previous(path: Path) -> None:
    """A resumed run re-evaluates; the earlier result is kept as <name>_step<N>.json."""
    if path.is_file():
        steps = json.loads(path.read_text()).get("steps", "old")
        path.rename(path.with_name(f"{path.stem}_step{steps}{path.suffix}"))


def evaluate_language(model: LerfModel, scene: SceneData, supervision: LanguageSupervision, cfg: TrainConfig,
                      run_dir: Path) -> dict:
    """Localization (LERF protocol) and segmentation (lerf_ovs) on the scene's labelled views."""
    engine = QueryEngine(model, supervision.text_encoder, cfg.relevancy, cfg.trainer.eval_chunk)
    loc = evaluate_localization(engine, scene, cfg.scene.name, run_dir)
    seg = evaluate_segmentation(engine, scene, cfg.scene.name, run_dir)
    log.info("localization %.3f over %d queries %s, mIoU %.3f %s", loc["overall"], loc["num_queries"],
             loc.get("per_level"), seg["miou"], seg.get("per_level"))
    return {"localization": loc["overall"], "miou": seg["miou"],
            "localization_per_level": loc.get("per_level", {}), "miou_per_level": seg.get("per_level", {})}


def train(cfg: DictConfig | TrainConfig, run_dir: Path) -> dict:
    """Train the model described by `cfg`, writing checkpoints, TensorBoard and eval into run_dir."""
    run_dir = Path(run_dir)
    cfg = to_typed(cfg)
    state = None
    if cfg.resume:
        state = ckpt.load_checkpoint(cfg.resume)
        saved = to_typed(state["config"])
        # A resumed run keeps its own settings; only the step budget may be extended.
        saved.trainer.max_steps = cfg.trainer.max_steps
        saved.resume = cfg.resume
        cfg, run_dir = saved, Path(cfg.resume)
        log.info("resuming %s from step %d", run_dir, state["step"])
    prepare_run_dir(run_dir, resume=state is not None)
    set_threads(cfg.trainer.num_threads)
    device = resolve_device(cfg.trainer.device)
    torch.manual_seed(cfg.trainer.seed)
    generator = torch.Generator().manual_seed(cfg.trainer.seed)

    scene = load_scene(cfg.scene)
    supervision = build_supervision(cfg, scene, device) if cfg.model.language.enabled else None
    geometry = SceneGeometry.from_scene(cfg.scene, scene.scale_factor, scene.background)
    dims = {"clip": supervision.clip_dim if supervision else 0, "dino": supervision.dino_dim if supervision else 0}
    model, backend = build_model(cfg.model, geometry, device, dims["clip"], dims["dino"])
    cfg.resolved = {"device": str(device), "hashgrid_backend": backend}
    optimizer, scheduler = build_optimizer(model, cfg.optim)
    start = 0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        ckpt.restore_rng(state["rng"], generator)
        start = state["step"]
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / ("config.yaml" if start == 0 else f"config_resume_{start}.yaml")).write_text(
        OmegaConf.to_yaml(to_plain(cfg)))
    write_provenance(run_dir, start)

    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(run_dir / "tensorboard"))
    sampler = RaySampler(scene, device)
    tcfg = cfg.trainer
    bar = tqdm(range(start, tcfg.max_steps), initial=start, total=tcfg.max_steps, disable=not tcfg.progress,
               desc="train", dynamic_ncols=True)
    # Training time accumulates over resumes (setup and the final evaluation excluded).
    t0, time_before = time.perf_counter(), (state or {}).get("train_time_s", 0.0)
    model.train()
    for step in bar:
        batch = sampler.sample(tcfg.rays_per_batch, generator)
        loss, logs = compute_losses(model, batch, step, generator, supervision)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        done = step + 1
        if done % tcfg.log_every == 0 or done == tcfg.max_steps:
            elapsed = time.perf_counter() - t0
            logs["rays_per_s"] = tcfg.rays_per_batch * (done - start) / max(elapsed, 1e-9)
            logs["lr"] = scheduler.get_last_lr()[0]
            for key, value in logs.items():
                writer.add_scalar(key, value, done)
            bar.set_postfix(loss=f"{logs['loss/total']:.4f}", psnr=f"{logs['psnr']:.2f}")
        if tcfg.image_every and done % tcfg.image_every == 0 and scene.eval_idx:
            tensorboard_images(writer, model, scene, supervision, cfg, done)
            model.train()
        if done % tcfg.checkpoint_every == 0 or done == tcfg.max_steps:
            _save(run_dir, model, optimizer, scheduler, done, generator, cfg, geometry, dims,
                  time_before + time.perf_counter() - t0)
    session_time = time.perf_counter() - t0
    bar.close()
    if tcfg.max_steps <= start:
        log.info("nothing to train: checkpoint is at step %d, max_steps %d", start, tcfg.max_steps)
    summary = {"steps": tcfg.max_steps, "train_time_s": time_before + session_time,
               "rays_per_s": tcfg.rays_per_batch * max(tcfg.max_steps - start, 0) / max(session_time, 1e-9)}
    if tcfg.eval_at_end and scene.eval_idx:
        model.eval()
        summary.update(evaluate_views(model, scene, run_dir / "eval", tcfg.eval_chunk))
        if tcfg.eval_language and supervision is not None and scene.labels_dir is not None:
            summary.update(evaluate_language(model, scene, supervision, cfg, run_dir))
        _keep_previous(run_dir / "eval.json")
        (run_dir / "eval.json").write_text(json.dumps(summary, indent=2))
        writer.add_scalar("eval/psnr", summary["psnr"], tcfg.max_steps)
    writer.close()
    log.info("done: %s", json.dumps(summary))
    return summary
