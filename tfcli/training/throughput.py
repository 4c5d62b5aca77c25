"""Training statistics between two log lines: loss per target token, tokens per second."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch


class Throughput:
    """Sums over the updates since the last report; the loss stays on the device until then."""

    def __init__(self) -> None:
        self.reset()
        self.lr = 0.0

    def reset(self) -> None:
        self.loss: torch.Tensor | float = 0.0
        self.tokens, self.src_tokens = 0, 0
        self.start = time.monotonic()

    def add(self, loss: torch.Tensor, tgt_tokens: int, src_tokens: int, lr: float) -> None:
        """One update: its summed loss (no sync per step), target and source tokens, rate."""
        self.loss = self.loss + loss
        self.tokens += tgt_tokens
        self.src_tokens += src_tokens
        self.lr = lr

    def pause_ended(self) -> None:
        """Validation time is not training throughput: count from now."""
        self.start = time.monotonic()

    def report(
        self, total: Callable[[torch.Tensor], torch.Tensor] | None = None
    ) -> dict[str, float]:
        """Loss, perplexity, lr and tokens/s since the last report, then start a new window.

        `total` sums the window's (loss, tokens, source tokens) over the processes of a
        torchrun job; every process calls it at the same step.
        """
        seconds = max(time.monotonic() - self.start, 1e-9)
        sums = torch.tensor([float(self.loss), self.tokens, self.src_tokens], dtype=torch.float64)
        if total is not None:
            sums = total(sums)
        loss_sum, tokens, src_tokens = sums.tolist()
        loss = loss_sum / max(tokens, 1)
        stats = {
            "loss": loss,
            "ppl": math.exp(min(loss, 50.0)),
            "lr": self.lr,
            "tgt_tok_s": tokens / seconds,
            "tok_s": (tokens + src_tokens) / seconds,
        }
        self.reset()
        return stats

    def state_dict(self) -> dict[str, Any]:
        """The open window, so that the first report after a resume covers the same updates."""
        return {
            "loss": float(self.loss),
            "tokens": self.tokens,
            "src_tokens": self.src_tokens,
            "seconds": time.monotonic() - self.start,
            "lr": self.lr,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loss = float(state.get("loss", 0.0))
        self.tokens, self.src_tokens = int(state.get("tokens", 0)), int(state.get("src_tokens", 0))
        self.start = time.monotonic() - float(state.get("seconds", 0.0))
        self.lr = float(state.get("lr", 0.0))
