"""Adam with one parameter group per network and LERF's exponential learning-rate decay; the
camera pose corrections get their own settings and schedule (`optim.camera`, nerfstudio's)."""
from __future__ import annotations

from functools import partial

import torch
from torch import nn

from lerf.config import AdamConfig, OptimConfig

CAMERA_GROUP = "pose_refinement"  # LerfModel's child that holds the per-frame pose corrections


def lr_factor(step: int, lr: float, lr_final: float, decay_steps: int, warmup_steps: int = 0) -> float:
    """Multiplier on `lr` at `step`: exponential from lr to lr_final over decay_steps, then held;
    times a linear ramp from 0 over the first warmup_steps (none when 0).

    Example: lr 1e-2, lr_final 1e-3, decay_steps 5000 -> step 2500 gives 10^-0.5 ≈ 0.316,
    step 5000 and later give 0.1; with warmup_steps 500, step 250 gives 0.5 · 10^-0.05 ≈ 0.446.
    """
    ramp = min(max(step, 0) / warmup_steps, 1.0) if warmup_steps > 0 else 1.0
    if decay_steps <= 0:
        return ramp * lr_final / lr
    t = min(max(step, 0), decay_steps) / decay_steps
    return ramp * (lr_final / lr) ** t


def param_groups(model: nn.Module) -> list[dict]:
    """One group per top-level network (field, proposals, language), so each can be tuned alone."""
    groups = []
    for name, child in model.named_children():
        params = [p for p in child.parameters() if p.requires_grad]
        if params:
            groups.append({"name": name, "params": params})
    return groups


def group_settings(name: str, cfg: OptimConfig) -> AdamConfig:
    """The camera corrections' group uses optim.camera; every network uses optim itself."""
    return cfg.camera if name == CAMERA_GROUP else cfg


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    groups, schedules = param_groups(model), []
    for group in groups:
        s = group_settings(group["name"], cfg)
        group.update(lr=s.lr, eps=s.eps, weight_decay=s.weight_decay)
        schedules.append(partial(lr_factor, lr=s.lr, lr_final=s.lr_final, decay_steps=s.decay_steps,
                                 warmup_steps=s.warmup_steps))
    optimizer = torch.optim.Adam(groups, lr=cfg.lr, eps=cfg.eps, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedules)
    return optimizer, scheduler
