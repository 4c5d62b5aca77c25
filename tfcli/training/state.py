"""Where a training run is, what it reports on the way, and what it returns."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from tfcli.config import TrainConfig

if TYPE_CHECKING:
    from tfcli.training.best import BestCheckpoints


class Progress(Protocol):
    """Where the loop reports progress (the CLI draws a progress bar)."""

    def update(self, step: int, fraction: float, stats: dict[str, float]) -> None: ...


@dataclass
class TrainState:
    """Where training is, beyond the weights and the optimizer: what resuming needs.

    A checkpoint holds these as plain keys of its training state (the step is the
    checkpoint's own); a key an older checkpoint lacks keeps its default.
    """

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of this process's share of the epoch already trained on
    epoch_batches: int = 0  # the size of that share: the batches stay what they were
    elapsed: float = 0.0  # training time up to the checkpoint, in seconds
    last_validated: int = -1  # the step of the last complete validation
    finished: bool = False  # the end of the run (averaging, test set) is done too
    lr_offset: int = 0  # the schedule runs at step + lr_offset (fine-tuning with its optimizer)
    nonfinite: int = 0  # updates skipped in a row for a loss or gradient that was not finite

    def state_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "step"}

    @classmethod
    def from_state_dict(cls, step: int, state: dict[str, Any]) -> TrainState:
        kept = {f.name: type(f.default)(state[f.name]) for f in fields(cls) if f.name in state}
        return cls(**(kept | {"step": step}))


@dataclass(frozen=True)
class TrainResult:
    """How a run ended: its step, best dev BLEU, test scores and a few sample translations."""

    run_dir: Path
    step: int
    best_bleu: float | None
    test: dict[str, object] | None
    samples: list[tuple[str, str, str]] = field(default_factory=list)  # (source, reference, output)
    message: str | None = None  # why nothing was trained: the run was finished already


CONTINUE = {  # what to raise to train a finished run further, by the reason it stopped
    "max_steps": "raise train.max_steps or train.max_minutes",
    "max_minutes": "raise train.max_steps or train.max_minutes",
    "max_epochs": "raise train.max_epochs",
    "patience": "raise train.patience",
}


def already_trained(step: int, stop: str) -> str:
    """What a rerun of a finished run says."""
    hint = next((h for key, h in CONTINUE.items() if key in stop), "nothing to do")
    return f"already trained to step {step} ({stop}); {hint} to continue"


def stop_reason(t: TrainConfig, s: TrainState, elapsed: float, best: BestCheckpoints) -> str | None:
    """Why training stops now (which limit of `t` it reached), or None to go on."""
    if s.step >= t.max_steps:
        return f"reached train.max_steps ({t.max_steps})"
    if t.max_epochs and s.epoch >= t.max_epochs:
        return f"reached train.max_epochs ({t.max_epochs})"
    if t.max_minutes and elapsed >= t.max_minutes * 60:
        return f"reached train.max_minutes ({t.max_minutes:g})"
    if best.out_of_patience(t.patience):
        return f"no better dev BLEU in {t.patience} validations (train.patience)"
    return None


def fraction_done(t: TrainConfig, step: int, elapsed: float) -> float:
    """How far training is, by steps or by time, whichever is further."""
    by_time = elapsed / (t.max_minutes * 60) if t.max_minutes else 0
    return min(1.0, max(step / t.max_steps, by_time))
