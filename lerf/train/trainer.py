"""The training loop: read top to bottom as load config → data → model → loop → save."""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from omegaconf import DictConfig
from tqdm import tqdm

from lerf.config import TrainConfig, apply_overrides, to_plain, to_typed, with_absolute_paths
from lerf.data.atomic import write_json, write_yaml
from lerf.data.cameras import Cameras
from lerf.data.pose_refinement import mean_correction
from lerf.data.scale_modes import ScaleRange
from lerf.data.scene import SceneData, load_scene
from lerf.model import checkpoint as ckpt
from lerf.model import LerfModel, SceneGeometry, build_model
from lerf.model.device import resolve_device, set_threads
from lerf.model.visibility import build_visibility, load_visibility, save_visibility
from lerf.train.cost import announce_run_cost
from lerf.train.losses import distortion_loss, interlevel_loss, rgb_loss
from lerf.train.optim import build_optimizer
from lerf.train.provenance import write_provenance
from lerf.train.rarity import RaritySampler
from lerf.train.rays import RayBatch, RaySampler
from lerf.train.runlock import run_lock
from lerf.train.supervision import LanguageSupervision, build_encoders, build_supervision, language_losses

log = logging.getLogger(__name__)

# evaluate(model, scene, text encoder or None, cfg, run_dir) -> metrics, and
# pictures(model, scene, text encoder or None, cfg) -> {TensorBoard tag: [h, w, 3] image}. Both are
# passed in by the entry point (lerf.evaluation.after_training.evaluate_trained and
# lerf.evaluation.progress.progress_pictures), so training imports neither evaluation nor query.
Evaluate = Callable[[LerfModel, SceneData, Optional[object], TrainConfig, Path], dict]
Pictures = Callable[[LerfModel, SceneData, Optional[object], TrainConfig], dict[str, torch.Tensor]]


class RunDirError(RuntimeError):
    """A run directory would be overwritten, or a resume target is unusable."""

    user_error = True  # lerf.apps.cli prints it as one line


def _psnr(mse: float) -> float:
    return -10.0 * math.log10(max(mse, 1e-10))


def _scalar(x: torch.Tensor | float) -> float:
    """A loss as a float for logging (a sum over no proposal networks is the int 0)."""
    return float(x.detach()) if torch.is_tensor(x) else float(x)


def compute_losses(model: LerfModel, batch: RayBatch, step: int, generator: torch.Generator,
                   supervision: Optional[LanguageSupervision]
                   ) -> tuple[torch.Tensor, dict[str, float], Optional[ScaleRange]]:
    """Forward one batch of rays and sum every loss; returns the total, scalar logs and the
    scales the language field was supervised at (None without one)."""
    cfg = model.cfg
    out = model(batch.origins, batch.dirs, step=step, jitter=True, generator=generator, frame_idx=batch.image_idx)
    # batch.ray_weight (rarity batches): every loss of the radiance field and its proposal
    # networks is importance-weighted back to uniform rays; the language losses are not.
    loss_rgb = rgb_loss(out["rgb"], batch.rgb, batch.ray_weight)
    loss_inter = sum(interlevel_loss(out["bins"], out["weights"], b, w, ray_weight=batch.ray_weight)
                     for b, w in zip(out["prop_bins"], out["prop_weights"]))
    loss_dist = distortion_loss(out["bins"], out["weights"], batch.ray_weight)
    total = loss_rgb + cfg.interlevel_weight * loss_inter + cfg.distortion_weight * loss_dist
    logs = {"loss/rgb": loss_rgb.item(), "loss/interlevel": _scalar(loss_inter), "loss/distortion": loss_dist.item(),
            "psnr": _psnr(loss_rgb.item())}
    scales = None
    if supervision is not None and model.language is not None:
        lang_total, lang_logs, scales = language_losses(model, out, batch, supervision, generator)
        total = total + lang_total
        logs.update(lang_logs)
    logs["loss/total"] = total.item()
    return total, logs, scales


def prepare_run_dir(run_dir: Path, resume: bool) -> None:
    """Refuse to train over an existing run unless asked to resume it."""
    if ckpt.has_checkpoint(run_dir) and not resume:
        raise RunDirError(f"{run_dir} already holds a run ({ckpt.checkpoint_files(run_dir)[0]}); pass "
                          f"resume={run_dir} to continue it, or choose another hydra.run.dir. Nothing was overwritten.")


def check_resume_dir(resume: Optional[str]) -> None:
    """`resume=<run>` must name an existing run directory (checked before anything is created)."""
    if resume and not Path(resume).is_dir():
        raise FileNotFoundError(f"resume: run directory {resume} not found; nothing was created")


def _keep_previous(path: Path) -> None:
    """A resumed run re-evaluates; the earlier result is kept as <name>_step<N>.json."""
    if path.is_file():
        try:
            steps = json.loads(path.read_text()).get("steps", "old")
        except (ValueError, AttributeError):  # damaged by an older, non-atomic writer: keep it for inspection
            steps = "damaged"
        path.rename(path.with_name(f"{path.stem}_step{steps}{path.suffix}"))


@dataclass
class Run:
    """Everything one training run holds while it trains."""

    cfg: TrainConfig
    run_dir: Path
    scene: SceneData
    supervision: Optional[LanguageSupervision]
    model: LerfModel
    geometry: SceneGeometry
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    generator: torch.Generator
    start: int = 0
    time_before: float = 0.0  # training seconds of earlier sessions of this run
    scale_range: Optional[ScaleRange] = None  # the scales supervised so far

    def note_scales(self, batch_scales: Optional[ScaleRange]) -> None:
        if batch_scales is not None:
            self.scale_range = batch_scales.union(self.scale_range)

    @property
    def dims(self) -> dict[str, int]:
        sup = self.supervision
        return {"clip": sup.clip_dim if sup else 0, "dino": sup.dino_dim if sup else 0}

    @torch.no_grad()
    def trained_cameras(self) -> Cameras:
        """The scene's cameras with the learned pose corrections (the poses the model fits)."""
        device = next(self.model.parameters()).device
        return replace(self.scene.cameras, c2w=self.model.refined_c2w(self.scene.cameras.c2w.to(device)).cpu())

    def save(self, step: int, train_time_s: float) -> None:
        ckpt.save_checkpoint(self.run_dir, ckpt.Checkpoint(
            step=step, config=self.cfg, geometry=self.geometry, dims=self.dims, model=self.model.state_dict(),
            c2w=self.trained_cameras().c2w, optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(), rng=ckpt.rng_state(self.generator), train_time_s=train_time_s,
            scale_range=self.scale_range), keep=self.cfg.trainer.keep_checkpoints)


def _resume_target(cfg: TrainConfig, overrides: Sequence[str]) -> tuple[TrainConfig, Optional[ckpt.Checkpoint]]:
    """For `resume=<run>`: the run's own config, changed only by the command line's `overrides`
    (e.g. trainer.max_steps=5000), and its newest good checkpoint. A fresh run: absolute paths."""
    if not cfg.resume:
        return with_absolute_paths(cfg), None
    state = ckpt.load_checkpoint(cfg.resume, set_aside_bad=True)
    saved, changes = apply_overrides(state.config, overrides)
    saved.resume = cfg.resume
    log.info("resuming %s from step %d with its own config%s", cfg.resume, state.step,
             "; changed on the command line: " + ", ".join(f"{k}: {a} -> {b}" for k, (a, b) in changes.items())
             if changes else " (nothing changed on the command line)")
    return saved, state


def setup(cfg: TrainConfig, run_dir: Path, overrides: Sequence[str] = ()) -> Run:
    """Data, supervision, model and optimiser of a fresh or resumed run (run_dir already locked)."""
    ckpt.remove_stale_temporaries(run_dir)
    cfg, state = _resume_target(cfg, overrides)
    prepare_run_dir(run_dir, resume=state is not None)
    set_threads(cfg.trainer.num_threads)
    device = resolve_device(cfg.trainer.device)
    torch.manual_seed(cfg.trainer.seed)
    generator = torch.Generator().manual_seed(cfg.trainer.seed)
    scene = load_scene(cfg.scene)
    encoders = build_encoders(cfg, scene, device) if cfg.model.language.enabled else None
    # A resumed run keeps the geometry its weights were trained in.
    geometry = state.geometry if state else SceneGeometry.from_scene(
        cfg.scene, scene.scale_factor, scene.background, len(scene.frame_names), scene.train_idx)
    clip_dim = encoders.clip.embed_dim if encoders else 0
    dino_dim = encoders.dino.feature_dim if encoders and encoders.dino is not None else 0
    model, backend = build_model(cfg.model, geometry, device, clip_dim, dino_dim)
    if encoders is not None and cfg.encoder.clip != "reference":  # a real run: say what it takes, first
        announce_run_cost(cfg, scene, encoders, model, device)
    supervision = build_supervision(cfg, scene, device, encoders) if encoders else None
    cfg.resolved = {"device": str(device), "hashgrid_backend": backend}
    optimizer, scheduler = build_optimizer(model, cfg.optim)
    run = Run(cfg, run_dir, scene, supervision, model, geometry, optimizer, scheduler, generator)
    if state is not None:
        model.load_state_dict(state.model)
        optimizer.load_state_dict(state.optimizer)
        scheduler.load_state_dict(state.scheduler)
        ckpt.restore_rng(state.rng, generator)
        run.start, run.time_before, run.scale_range = state.step, state.train_time_s, state.scale_range
    return run


def _write_run_files(run: Run) -> None:
    run.run_dir.mkdir(parents=True, exist_ok=True)
    name = "config.yaml" if run.start == 0 else f"config_resume_{run.start}.yaml"
    write_yaml(run.run_dir / name, to_plain(run.cfg))
    write_provenance(run.run_dir, run.start)


def _log_step(writer, bar, logs: dict, run: Run, done: int, elapsed: float) -> None:
    tcfg = run.cfg.trainer
    logs["rays_per_s"] = tcfg.rays_per_batch * (done - run.start) / max(elapsed, 1e-9)
    logs["lr"] = run.scheduler.get_last_lr()[0]
    refine = run.model.pose_refinement
    if refine is not None and refine.delta.numel():  # how far the corrections moved the cameras (mean)
        rot_deg, shift = mean_correction(refine, run.scene.cameras.c2w)
        logs["camera/rotation_deg"] = rot_deg
        logs["camera/translation_m"] = shift / run.geometry.scale_factor
    for key, value in logs.items():
        writer.add_scalar(key, value, done)
    bar.set_postfix(loss=f"{logs['loss/total']:.4f}", psnr=f"{logs['psnr']:.2f}")


def _check_loss(logs: dict, step: int, run_dir: Path) -> None:
    """Stop at the first non-finite loss, before it reaches the weights or a checkpoint."""
    if not math.isfinite(logs["loss/total"]):
        terms = ", ".join(f"{k} {v:.4g}" for k, v in logs.items() if k.startswith("loss/"))
        kept = ckpt.checkpoint_files(run_dir)
        raise ckpt.NonFiniteError(
            f"training diverged: non-finite loss at step {step} ({terms}); stopped without checkpointing it. "
            f"Last good checkpoint: {kept[0] if kept else 'none'}. Lower optim.lr, or check the scene's poses "
            "and images")


def _guarded_losses(run: Run, batch: RayBatch, step: int
                    ) -> tuple[torch.Tensor, dict[str, float], Optional[ScaleRange]]:
    """compute_losses, turning divergence into NonFiniteError: a non-finite loss, or non-finite
    weights that made the forward pass itself fail (NaN positions index the hash grid out of range)."""
    try:
        loss, logs, scales = compute_losses(run.model, batch, step, run.generator, run.supervision)
    except (IndexError, RuntimeError) as err:
        bad = [n for n, p in run.model.named_parameters() if not bool(torch.isfinite(p).all())]
        if bad:
            raise ckpt.NonFiniteError(f"training diverged: non-finite weights ({', '.join(bad[:3])}) at step "
                                      f"{step + 1}; stopped without checkpointing them. Lower optim.lr") from err
        raise
    _check_loss(logs, step + 1, run.run_dir)
    return loss, logs, scales


def ray_sampler(run: Run) -> RaySampler:
    """The run's ray sampler; the rarity clusters are rebuilt from the cached pyramid (seconds),
    the same on a resume (seeded by trainer.seed)."""
    tcfg = run.cfg.trainer
    device = next(run.model.parameters()).device
    if tcfg.ray_sampling == "uniform":
        return RaySampler(run.scene, device)
    if run.supervision is None:
        raise ValueError("trainer.ray_sampling=rarity clusters the CLIP pyramid; it needs model.language.enabled=true")
    rarity = RaritySampler(run.supervision.clip_pyramid, run.scene.train_idx, tcfg.rarity_clusters, tcfg.seed)
    log.info("rarity sampling: %.0f %% of each batch over %d appearance clusters of %s tiles",
             100 * tcfg.rarity_share, rarity.num_clusters, rarity.cluster_sizes().tolist())
    return RaySampler(run.scene, device, rarity, tcfg.rarity_share, tcfg.rarity_unbiased_nerf)


def _text_encoder(run: Run) -> Optional[object]:
    return run.supervision.text_encoder if run.supervision is not None else None


def _write_pictures(run: Run, writer, pictures: Pictures, step: int) -> None:
    for tag, image in pictures(run.model, run.scene, _text_encoder(run), run.cfg).items():
        writer.add_image(tag, image, step, dataformats="HWC")
    run.model.train()


def train_steps(run: Run, writer, pictures: Optional[Pictures] = None) -> float:
    """Steps from run.start to max_steps; returns this session's training seconds. `pictures`
    (when given) makes the TensorBoard pictures every trainer.image_every steps."""
    tcfg = run.cfg.trainer
    sampler = ray_sampler(run)
    bar = tqdm(range(run.start, tcfg.max_steps), initial=run.start, total=tcfg.max_steps,
               disable=not tcfg.progress, desc="train", dynamic_ncols=True)
    t0 = time.perf_counter()
    run.model.train()
    for step in bar:
        # The pose corrections (if any) are applied anew each step, so the loss trains them.
        batch = sampler.sample(tcfg.rays_per_batch, run.generator, run.model.refined_c2w(sampler.cameras.c2w))
        loss, logs, scales = _guarded_losses(run, batch, step)
        run.note_scales(scales)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        run.scheduler.step()
        done = step + 1
        if done % tcfg.log_every == 0 or done == tcfg.max_steps:
            _log_step(writer, bar, logs, run, done, time.perf_counter() - t0)
        if pictures is not None and tcfg.image_every and done % tcfg.image_every == 0 and run.scene.eval_idx:
            _write_pictures(run, writer, pictures, done)
        if done % tcfg.checkpoint_every == 0 or done == tcfg.max_steps:
            run.save(done, run.time_before + time.perf_counter() - t0)
    bar.close()
    return time.perf_counter() - t0


def _save_visibility(run: Run) -> None:
    """The visibility grid queries filter with (LERF §3.4), from the training views' depths."""
    run.model.eval()
    grid = build_visibility(run.model, run.scene.cameras, list(run.scene.train_idx), run.cfg.relevancy,
                            run.cfg.trainer.eval_chunk)
    log.info("visibility grid -> %s", save_visibility(grid, run.run_dir))


def _nothing_to_train(run: Run) -> dict:
    """A resume with no step left to train leaves the run as it is: no config, provenance,
    TensorBoard, evaluation or visibility file is rewritten. Only a visibility grid that training
    never finished writing (missing or damaged) is built, once."""
    log.info("nothing to train: checkpoint is at step %d, max_steps %d; the run is left as it is", run.start,
             run.cfg.trainer.max_steps)
    if run.model.language is not None and load_visibility(run.run_dir, 1) is None:
        _save_visibility(run)
    summary = {"steps": run.start, "train_time_s": run.time_before}
    try:
        summary.update(json.loads((run.run_dir / "eval.json").read_text()))
    except (OSError, ValueError, TypeError):  # no (or a damaged) evaluation: the summary has no metrics
        pass
    return summary


def _final_eval(run: Run, summary: dict, evaluate: Evaluate, writer) -> None:
    run.model.eval()
    scene = replace(run.scene, cameras=run.trained_cameras())  # the poses query and eval will see
    summary.update(evaluate(run.model, scene, _text_encoder(run), run.cfg, run.run_dir))
    _keep_previous(run.run_dir / "eval.json")
    write_json(run.run_dir / "eval.json", summary)
    writer.add_scalar("eval/psnr", summary["psnr"], run.cfg.trainer.max_steps)


def train(cfg: DictConfig | TrainConfig, run_dir: Path, evaluate: Optional[Evaluate] = None,
          overrides: Sequence[str] = (), pictures: Optional[Pictures] = None) -> dict:
    """Train the model described by `cfg`, writing checkpoints, TensorBoard and eval into run_dir;
    `evaluate` (when given) scores the trained model and its result goes to eval.json; `pictures`
    (when given) makes TensorBoard's progress pictures. With
    `resume=<run>` the run continues in its own directory with its own config, changed only by
    `overrides` (the command line's key=value list). The run directory is locked throughout."""
    cfg = to_typed(cfg)  # the schema rejects bad settings here, before any work
    check_resume_dir(cfg.resume)
    run_dir = Path(cfg.resume or run_dir).resolve()
    with run_lock(run_dir):
        return _train_locked(cfg, run_dir, evaluate, overrides, pictures)


def _train_locked(cfg: TrainConfig, run_dir: Path, evaluate: Optional[Evaluate], overrides: Sequence[str],
                  pictures: Optional[Pictures]) -> dict:
    run = setup(cfg, run_dir, overrides)
    if run.cfg.trainer.max_steps <= run.start:
        return _nothing_to_train(run)
    _write_run_files(run)
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(run.run_dir / "tensorboard"))
    tcfg = run.cfg.trainer
    try:
        session_time = train_steps(run, writer, pictures)
        if run.model.language is not None:
            _save_visibility(run)
        # Training time accumulates over resumes (setup and the final evaluation excluded).
        summary = {"steps": tcfg.max_steps, "train_time_s": run.time_before + session_time,
                   "rays_per_s": tcfg.rays_per_batch * max(tcfg.max_steps - run.start, 0) / max(session_time, 1e-9)}
        if evaluate is not None and tcfg.eval_at_end and run.scene.eval_idx:
            _final_eval(run, summary, evaluate, writer)
    finally:
        writer.close()
    log.info("done: %s", json.dumps(summary))
    return summary
