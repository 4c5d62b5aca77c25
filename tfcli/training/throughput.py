"""Training statistics between two log lines: loss per target token, tokens per second."""

from __future__ import annotations

import math
import time

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

    def report(self) -> dict[str, float]:
        """Loss, perplexity, lr and tokens/s since the last report, then start a new window."""
        seconds = max(time.monotonic() - self.start, 1e-9)
        loss = float(self.loss) / max(self.tokens, 1)
        stats = {
            "loss": loss,
            "ppl": math.exp(min(loss, 50.0)),
            "lr": self.lr,
            "tgt_tok_s": self.tokens / seconds,
            "tok_s": (self.tokens + self.src_tokens) / seconds,
        }
        self.reset()
        return stats
