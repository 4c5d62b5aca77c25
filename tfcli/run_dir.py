"""The files of a run directory, named in one place (the README's run-directory table)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_STEP = re.compile(r"checkpoint_step(\d+)\.pt")


@dataclass(frozen=True)
class RunDir:
    """A run directory: what `tfcli train` writes and `tfcli translate -m` reads.

    config.yaml            the resolved config, every key (of the latest start)
    config.original.yaml   the first config.yaml, kept when a resume changes a key
    train.log              the log of every start of the run
    spm.model              the shared sentencepiece model (or src.model and tgt.model)
    checkpoint_last.pt     the latest weights with the training state, for resuming
    checkpoint_best.pt     the best weights by dev BLEU (no training state: for translating)
    checkpoint_step<N>.pt  the train.keep_best best checkpoints, with the training state
    checkpoint_average.pt  the average of those, when train.average_best is on
    metrics.jsonl          typed JSON records: training loss, validations, test scores
    test.hyp               the test set translations
    prepared/<key>/        the encoded training pairs (tfcli prepare), unless data.cache_dir
    """

    path: Path

    def __init__(self, path: str | Path) -> None:
        object.__setattr__(self, "path", Path(path))

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def original_config(self) -> Path:
        return self.path / "config.original.yaml"

    @property
    def log(self) -> Path:
        return self.path / "train.log"

    @property
    def shared_spm(self) -> Path:
        return self.path / "spm.model"

    @property
    def src_spm(self) -> Path:
        return self.path / "src.model"

    @property
    def tgt_spm(self) -> Path:
        return self.path / "tgt.model"

    @property
    def last(self) -> Path:
        return self.path / "checkpoint_last.pt"

    @property
    def best(self) -> Path:
        return self.path / "checkpoint_best.pt"

    @property
    def average(self) -> Path:
        return self.path / "checkpoint_average.pt"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def prepared(self) -> Path:
        return self.path / "prepared"

    @property
    def test_hyp(self) -> Path:
        return self.path / "test.hyp"

    def step(self, step: int) -> Path:
        """The checkpoint kept for the validation at `step`."""
        return self.path / f"checkpoint_step{step}.pt"

    def step_checkpoints(self) -> dict[int, Path]:
        """The kept step checkpoints on disk, by step."""
        found = (_STEP.fullmatch(p.name) for p in self.path.glob("checkpoint_step*.pt"))
        return {int(m.group(1)): self.path / m.group(0) for m in found if m}

    def checkpoints(self) -> list[Path]:
        """Every checkpoint file of the run on disk."""
        named = [self.last, self.best, self.average]
        return [p for p in named if p.exists()] + list(self.step_checkpoints().values())

    def training_files(self) -> list[Path]:
        """What training wrote here (all of it goes when a run is started again from step 0)."""
        named = [self.config, self.original_config, self.log, self.metrics, self.test_hyp]
        named += [self.shared_spm, self.src_spm, self.tgt_spm]
        return [p for p in named if p.exists()] + self.checkpoints()
