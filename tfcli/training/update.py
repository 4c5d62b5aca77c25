"""One optimizer update: `accumulate` batches forward and backward, the gradient of the loss per
target token of the whole update, and no update at all when the loss or gradient is not finite.

Under torchrun the tokens are counted over every process, so two processes with one batch each
make the update that one process makes with `train.accumulate: 2` over the same two batches.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from tfcli.config import TrainConfig
from tfcli.data.batching import Batch
from tfcli.errors import TfcliError
from tfcli.model.kernels import precision_scope
from tfcli.training.distributed import Distributed


@dataclass(frozen=True)
class UpdateResult:
    applied: bool  # False: skipped, the loss or the gradient was not finite
    loss: torch.Tensor  # the summed loss of this process's batches, still on the device
    tokens: int  # this process's target tokens
    src_tokens: int


class Updater:
    """Makes updates of `model` through `objective` (the loss, DDP-wrapped under torchrun)."""

    def __init__(
        self,
        model: torch.nn.Module,
        objective: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
        dist: Distributed,
        precision: str,
        clip_norm: float,
    ) -> None:
        self.model, self.objective, self.optimizer, self.scaler = (
            model,
            objective,
            optimizer,
            scaler,
        )
        self.dist, self.precision, self.clip_norm = dist, precision, clip_norm
        self.params = [p for p in model.parameters() if p.requires_grad]

    def __call__(self, group: Sequence[Batch], lr: float, device: torch.device) -> UpdateResult:
        self.model.train()
        for pg in self.optimizer.param_groups:
            pg["lr"] = lr
        tokens = sum(b.tgt_tokens for b in group)
        # DDP averages the gradients of the processes: dividing by the mean of their token
        # counts makes the gradient that of the summed loss over all tokens of the update
        per_process = self.dist.sum(tokens) / self.dist.world
        total = torch.zeros((), device=device)
        for i, batch in enumerate(group):
            batch = batch.to(device)
            sync = i == len(group) - 1 or self.dist.world == 1
            ctx = self.objective.no_sync() if not sync else contextlib.nullcontext()
            with ctx, precision_scope(device, self.precision):
                loss = self.objective(batch.src, batch.tgt_in, batch.tgt_out)
            self.scaler.scale(loss / per_process).backward()
            total += loss.detach()
        applied = self._step(total)
        return UpdateResult(applied, total, tokens, sum(b.src_tokens for b in group))

    def _step(self, total: torch.Tensor) -> bool:
        """Clip and step, unless the loss (or, without a GradScaler, the gradient) is not
        finite on some process; fp16's GradScaler skips overflowing gradients on its own."""
        bad = ~torch.isfinite(total)
        norm = None
        if self.precision != "fp16":
            norm = torch.nn.utils.get_total_norm(
                [p.grad for p in self.params if p.grad is not None]
            )
            bad = bad | ~torch.isfinite(norm)
        if self.dist.any(bad.reshape(1))[0]:
            self.optimizer.zero_grad(set_to_none=True)
            return False
        self.scaler.unscale_(self.optimizer)
        if self.clip_norm > 0:
            if norm is None:
                torch.nn.utils.clip_grad_norm_(self.params, self.clip_norm)
            else:  # the same as clip_grad_norm_, with the norm computed above
                torch.nn.utils.clip_grads_with_norm_(self.params, self.clip_norm, norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return True


def nonfinite_error(
    what: str, t: TrainConfig, precision: str, kept: tuple[Path, int] | None
) -> TfcliError:
    """The error that ends a run whose loss or weights went non-finite: what to change, and
    the last good checkpoint (path, step) that stays."""
    remedies = [f"lower train.lr (now {t.lr:g})"]
    if precision != "fp32":
        remedies.append("use train.precision: fp32")
    elif t.clip_norm == 0:
        remedies.append("set train.clip_norm (1.0, say)")
    left = "no checkpoint was written"
    if kept is not None:
        left = f"the last good checkpoint, {kept[0]} (step {kept[1]}), is kept"
    return TfcliError(f"{what}; training stopped: {' or '.join(remedies)}; {left}")
