"""Optimiser, schedule and gradient clipping of the official recipe (docs/training.md, optimiser and schedule)."""

from __future__ import annotations

import torch
from torch import nn

from grm.train.config import TrainConfig

GROUP_NAMES = ("head", "backbone", "divide")


def param_groups(model: nn.Module, lr: float, backbone_multiplier: float) -> list[dict]:
    """Three AdamW groups by parameter name: no "backbone" (head) at ``lr``; "backbone" without "divide"
    at ``lr * backbone_multiplier``; "backbone" with "divide" (the division predictors) at ``lr``.

    Only parameters with ``requires_grad`` are included; weight decay applies to all of them.
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return [
        {"name": "head", "params": [p for n, p in named if "backbone" not in n], "lr": lr},
        {
            "name": "backbone",
            "params": [p for n, p in named if "backbone" in n and "divide" not in n],
            "lr": lr * backbone_multiplier,
        },
        {"name": "divide", "params": [p for n, p in named if "backbone" in n and "divide" in n], "lr": lr},
    ]


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW (betas 0.9/0.999, eps 1e-8) with weight decay on every parameter."""
    return torch.optim.AdamW(
        param_groups(model, cfg.lr, cfg.backbone_multiplier), lr=cfg.lr, weight_decay=cfg.weight_decay
    )


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.StepLR:
    """StepLR stepped once per epoch: x0.1 after ``lr_drop_epoch`` epochs."""
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.lr_drop_epoch, gamma=0.1)


def clip_gradients(model: nn.Module, max_norm: float) -> float:
    """Clip the total L2 norm of all gradients to ``max_norm``; returns the norm before clipping."""
    return float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))
