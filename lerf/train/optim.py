"""Adam with one parameter group per network and LERF's exponential learning-rate decay."""
from __future__ import annotations

import torch
from torch import nn

from lerf.config import OptimConfig


def lr_factor(step: int, lr: float, lr_final: float, decay_steps: int) -> float:
    """Multiplier on `lr` at `step`: exponential from lr to lr_final over decay_steps, then held.

    Example: lr 1e-2, lr_final 1e-3, decay_steps 5000 -> step 2500 gives 10^-0.5 ≈ 0.316,
    step 5000 and later give 0.1.
    """
    if decay_steps <= 0:
        return lr_final / lr
    t = min(max(step, 0), decay_steps) / decay_steps
    return (lr_final / lr) ** t


def param_groups(model: nn.Module) -> list[dict]:
    """One group per top-level network (field, proposals, language), so each can be tuned alone."""
    groups = []
    for name, child in model.named_children():
        params = [p for p in child.parameters() if p.requires_grad]
        if params:
            groups.append({"name": name, "params": params})
    return groups


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    optimizer = torch.optim.Adam(param_groups(model), lr=cfg.lr, eps=cfg.eps, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, cfg.lr, cfg.lr_final, cfg.decay_steps))
    return optimizer, scheduler
