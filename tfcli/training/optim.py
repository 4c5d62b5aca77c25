"""How training optimizes: the learning-rate schedule and the optimizer (the loss: loss.py)."""

from __future__ import annotations

import math

import torch

from tfcli.config import TrainConfig


def learning_rate(step: int, peak: float, warmup: int, schedule: str) -> float:
    """Linear warmup to `peak`, then `peak * sqrt(warmup / step)` (inverse_sqrt) or constant."""
    if warmup > 0 and step < warmup:
        return peak * (step + 1) / warmup
    if schedule == "constant" or warmup == 0:
        return peak
    return peak * math.sqrt(warmup / (step + 1))


def make_optimizer(model: torch.nn.Module, t: TrainConfig) -> torch.optim.Optimizer:
    """Adam or AdamW, fused into one kernel per step where PyTorch has it (CUDA; CPU from 2.4)."""
    cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
    kwargs = dict(lr=t.lr, betas=t.adam_betas, eps=t.adam_eps, weight_decay=t.weight_decay)
    try:
        return cls(model.parameters(), fused=True, **kwargs)
    except (RuntimeError, TypeError):
        return cls(model.parameters(), foreach=True, **kwargs)
