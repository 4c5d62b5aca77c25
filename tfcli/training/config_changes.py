"""Which config keys a resumed run may change, and the run directory's record of its configs.

A resumed run must be the run it was: a key that shapes the model, the tokenizer, the data,
the batches or the random streams keeps its value, and a change is an error naming the key
and both values. The keys below only say how long to train, how often to validate and log,
what to keep, how to decode, and the remedies for a run whose loss went non-finite (a lower
`train.lr`, `train.precision: fp32`, clipping); each change is logged.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from tfcli.atomic import write_text_atomic
from tfcli.config import Config, config_to_dict, save_config
from tfcli.errors import ConfigError
from tfcli.run_dir import RunDir

log = logging.getLogger(__name__)

MAY_CHANGE = frozenset(
    {
        "data.test",
        "data.workers",
        "data.cache_dir",
        "train.device",
        "train.precision",
        "train.lr",
        "train.clip_norm",
        "train.max_steps",
        "train.max_epochs",
        "train.max_minutes",
        "train.valid_every",
        "train.valid_beam",
        "train.valid_bleu_sentences",
        "train.keep_best",
        "train.patience",
        "train.average_best",
        "train.log_every",
        "train.compile",
        "train.threads",
    }
)
MAY_CHANGE_SECTIONS = frozenset({"decode"})  # every key of these sections


def may_change(key: str) -> bool:
    return key in MAY_CHANGE or key.split(".")[0] in MAY_CHANGE_SECTIONS


def flat(cfg: Config) -> dict[str, Any]:
    """Every dotted key of a config with its value."""
    return {
        f"{section}.{key}": value
        for section, keys in config_to_dict(cfg).items()
        for key, value in keys.items()
    }


def config_changes(old: Config, new: Config) -> dict[str, tuple[Any, Any]]:
    """The keys whose values differ: key -> (old, new)."""
    a, b = flat(old), flat(new)
    return {key: (a[key], b[key]) for key in a if a[key] != b[key]}


def check_resume(old: Config, new: Config, where: Path) -> dict[str, tuple[Any, Any]]:
    """The changes a resume of the run trained with `old` may make; any other is an error."""
    changes = config_changes(old, new)
    for key, (was, now) in changes.items():
        if not may_change(key):
            raise ConfigError(
                f"{where}: {key} is {was!r} in this run, {now!r} now: a resumed run keeps it "
                f"(give it back its value, or train a new run with another --output-dir)"
            )
    return changes


def describe(changes: dict[str, tuple[Any, Any]]) -> str:
    return ", ".join(f"{key} {was!r} -> {now!r}" for key, (was, now) in changes.items())


def save_run_config(run: RunDir, cfg: Config, changes: dict[str, tuple[Any, Any]] | None) -> None:
    """Write config.yaml atomically for a new run (`changes` None) or a resume that changes
    keys; before a resume's first change replaces it, keep it as config.original.yaml. The
    changes themselves go to the run's log."""
    if changes is not None and run.config.exists():
        if not changes:
            return  # a resume with the same config: config.yaml stays as it is
        log.info("config changes on resuming: %s", describe(changes))
        if not run.original_config.exists():
            text = run.config.read_text(encoding="utf-8")
            write_text_atomic(run.original_config, text, "config file")
    save_config(cfg, run.config)
