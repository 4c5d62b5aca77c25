"""Which checkpoints a run keeps: the best `train.keep_best` by dev BLEU as
checkpoint_step<N>.pt (with the training state, so a run can resume from any of them), the
best of them as checkpoint_best.pt (weights only), their average when asked, and the patience
count of validations without a new best."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tfcli.checkpoint import Checkpoint, average_weights, save_checkpoint
from tfcli.run_dir import RunDir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BestUpdate:
    """Where a new dev BLEU puts the kept checkpoints."""

    best: list[tuple[float, int]]  # (dev BLEU, step), best first, at most `keep`
    improved: bool  # a new best score
    kept: bool  # this step is among the kept ones: write its checkpoint
    dropped: list[int]  # steps whose checkpoints go


def update_best(best: list[tuple[float, int]], bleu: float, step: int, keep: int) -> BestUpdate:
    """Rank (bleu, step) among the kept checkpoints; ties go to the later step."""
    ranked = sorted([*best, (bleu, step)], key=lambda b: (-b[0], -b[1]))
    return BestUpdate(
        best=ranked[:keep],
        improved=not best or bleu > best[0][0],
        kept=(bleu, step) in ranked[:keep],
        dropped=[s for _, s in ranked[keep:]],
    )


@dataclass
class BestCheckpoints:
    """The kept checkpoints' (dev BLEU, step), best first, and validations since a new best."""

    keep: int
    best: list[tuple[float, int]] = field(default_factory=list)
    bad_validations: int = 0

    @property
    def best_bleu(self) -> float | None:
        return self.best[0][0] if self.best else None

    @property
    def steps(self) -> list[int]:
        return [step for _, step in self.best]

    def record(self, bleu: float, step: int) -> BestUpdate:
        """Rank a validation's BLEU; count it against patience unless it is a new best."""
        update = update_best(self.best, bleu, step, self.keep)
        self.best = update.best
        self.bad_validations = 0 if update.improved else self.bad_validations + 1
        return update

    def out_of_patience(self, patience: int) -> bool:
        return patience > 0 and self.bad_validations >= patience

    def trim(self) -> list[int]:
        """Fewer kept checkpoints (train.keep_best lowered on resuming): the steps dropped."""
        dropped = [step for _, step in self.best[self.keep :]]
        self.best = self.best[: self.keep]
        return dropped

    def save(self, run: RunDir, step: int, update: BestUpdate, ckpt: Checkpoint) -> bool:
        """Write what `update` (of the validation at `step`) keeps: `ckpt` with its training
        state as checkpoint_step<N>.pt, without it as checkpoint_best.pt. Returns whether the
        step's checkpoint was written. The dropped ones go later (`drop`), once
        checkpoint_last.pt no longer lists them."""
        if update.kept:
            save_checkpoint(run.step(step), ckpt)
            if update.improved:
                save_checkpoint(run.best, dataclasses.replace(ckpt, state={}))
        return update.kept

    @staticmethod
    def drop(run: RunDir, update: BestUpdate) -> None:
        for dropped in update.dropped:
            run.step(dropped).unlink(missing_ok=True)

    def average(
        self, run: RunDir, step: int, dev_bleu: Callable[[Checkpoint], float]
    ) -> float | None:
        """Average the kept checkpoints into checkpoint_average.pt (of training step `step`); it
        becomes the best one if its dev BLEU is higher. Returns the best dev BLEU after that."""
        paths = [run.step(kept) for kept in self.steps]
        averaged = average_weights([p for p in paths if p.exists()])
        averaged = dataclasses.replace(averaged, step=step)
        bleu, best = dev_bleu(averaged), self.best_bleu
        log.info(
            "average of %d best checkpoints: dev BLEU %.2f (best single %.2f)",
            len(paths),
            bleu,
            best or 0.0,
        )
        save_checkpoint(run.average, averaged)
        if best is None or bleu > best:
            save_checkpoint(run.best, averaged)
            return bleu
        return best

    def state_dict(self) -> dict[str, Any]:
        return {"best": [[b, s] for b, s in self.best], "bad_validations": self.bad_validations}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = [(float(b), int(s)) for b, s in state.get("best", [])]
        self.bad_validations = int(state.get("bad_validations", 0))
