"""A run's metrics.jsonl read back: its training, validation and test records.

Every record has a "kind": "train" (loss and learning rate at every `train.log_every`),
"valid" (a validation: dev loss, perplexity, BLEU) or "test" (the test scores). Records of
older runs have none: a record with "test" is a test record, any other a validation record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from tfcli.errors import DataError, read_error

KINDS = ("train", "valid", "test")


def record_kind(record: dict) -> str:
    """ "train", "valid" or "test", also for the records of runs written before "kind"."""
    kind = record.get("kind")
    if kind is None:
        return "test" if "test" in record else "valid"
    return kind


@dataclass
class MetricsLog:
    """The records of one metrics.jsonl, by kind, in the order they were written."""

    train: list[dict] = field(default_factory=list)
    valid: list[dict] = field(default_factory=list)
    test: list[dict] = field(default_factory=list)

    def best_valid(self) -> dict | None:
        """The validation with the highest dev BLEU (the later one of a tie), if any."""
        scored = [r for r in self.valid if isinstance(r.get("dev_bleu"), int | float)]
        return max(reversed(scored), key=lambda r: r["dev_bleu"], default=None)


def read_metrics(path: str | Path) -> MetricsLog:
    """Read metrics.jsonl; a line that is not a JSON object is an error naming it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise DataError(read_error(path, e, "metrics log")) from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text") from None
    log = MetricsLog()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{number}: not a JSON record ({e.msg})") from None
        if not isinstance(record, dict):
            raise DataError(f"{path}:{number}: not a JSON object")
        kind = record_kind(record)
        if kind not in KINDS:
            raise DataError(f"{path}:{number}: unknown record kind {kind!r}")
        getattr(log, kind).append(record)
    return log
