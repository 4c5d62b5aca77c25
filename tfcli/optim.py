"""What training optimizes and how: the loss, the learning-rate schedule, the optimizer."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from tfcli.config import TrainConfig
from tfcli.tokenizer import PAD_ID


def learning_rate(step: int, peak: float, warmup: int, schedule: str) -> float:
    """Linear warmup to `peak`, then `peak * sqrt(warmup / step)` (inverse_sqrt) or constant."""
    if warmup > 0 and step < warmup:
        return peak * (step + 1) / warmup
    if schedule == "constant" or warmup == 0:
        return peak
    return peak * math.sqrt(warmup / (step + 1))


def loss_sum(logits: torch.Tensor, target: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Label-smoothed cross-entropy summed over non-pad target tokens.

    Shape: logits (B, T, V), target (B, T) -> scalar
    """
    return F.cross_entropy(
        logits.float().flatten(0, 1),
        target.flatten(),
        ignore_index=PAD_ID,
        label_smoothing=smoothing,
        reduction="sum",
    )


def make_optimizer(model: torch.nn.Module, t: TrainConfig) -> torch.optim.Optimizer:
    """Adam or AdamW, fused into one kernel per step where PyTorch has it (CUDA; CPU from 2.4)."""
    cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
    kwargs = dict(lr=t.lr, betas=t.adam_betas, eps=t.adam_eps, weight_decay=t.weight_decay)
    try:
        return cls(model.parameters(), fused=True, **kwargs)
    except (RuntimeError, TypeError):
        return cls(model.parameters(), foreach=True, **kwargs)
