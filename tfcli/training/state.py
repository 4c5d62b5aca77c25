"""Where a training run is, what it reports on the way, and what it returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


class Progress(Protocol):
    """Where the loop reports progress (the CLI draws a progress bar)."""

    def update(self, step: int, fraction: float, stats: dict[str, float]) -> None: ...


@dataclass
class TrainState:
    """Where training is, beyond the weights and the optimizer: what resuming needs."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    elapsed: float = 0.0


@dataclass(frozen=True)
class TrainResult:
    """How a run ended: its step, best dev BLEU, test scores and a few sample translations."""

    run_dir: Path
    step: int
    best_bleu: float | None
    test: dict[str, object] | None
    samples: list[tuple[str, str, str]] = field(default_factory=list)  # (source, reference, output)
