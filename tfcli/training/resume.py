"""Which checkpoint a rerun resumes from, and the run directory put back in step with it.

A run directory is a transaction log whose commit records are the checkpoints with training
state: checkpoint_last.pt and the kept checkpoint_step<N>.pt. A rerun resumes from the newest
of them that loads (a damaged one is reported and passed over); what was written after it
belongs to work the rerun redoes, so it goes: metrics records past the size the checkpoint
recorded, kept checkpoints its best list does not hold, and a checkpoint_best.pt or
checkpoint_average.pt of a later step.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from tfcli.atomic import remove_stale_temps, temp_path, truncate, write_error
from tfcli.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from tfcli.config import Config, load_config
from tfcli.errors import CheckpointError, TfcliError
from tfcli.run_dir import RunDir
from tfcli.training.best import BestCheckpoints

log = logging.getLogger(__name__)


def prepare_run_dir(run: RunDir, overwrite: bool) -> None:
    """Create the run directory, check that it can be written, remove the temporary files of
    interrupted writes and, with `overwrite`, everything an earlier training wrote."""
    path = run.path
    if path.exists() and not path.is_dir():
        raise TfcliError(f"{path}: is a file, not a run directory; give another --output-dir")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = temp_path(path / "probe")
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise TfcliError(write_error(path, e, "run directory")) from None
    stale = remove_stale_temps(path)
    if stale:
        log.info("removed %d temporary files of interrupted writes", len(stale))
    if overwrite:
        files = run.training_files()
        for file in files:
            file.unlink()
        if files:
            log.warning(
                "--overwrite: removed %d files of %s; training starts at step 0", len(files), path
            )


def find_resume(run: RunDir) -> tuple[Path, Checkpoint] | None:
    """The newest checkpoint with training state that loads, None for a new run; a run
    directory whose checkpoints are all damaged or gone is refused."""
    candidates = [run.last, *(p for _, p in sorted(run.step_checkpoints().items(), reverse=True))]
    problems = []
    for path in candidates:
        if not path.exists():
            continue
        try:
            ckpt = load_checkpoint(path)
        except CheckpointError as e:
            problems.append(str(e))
            log.warning("%s", e)
            continue
        if "optimizer" not in ckpt.state:
            problems.append(f"{path}: holds no training state")
            continue
        if problems:
            log.warning(
                "resuming from %s (step %d), the newest checkpoint that loads", path, ckpt.step
            )
        return path, ckpt
    if problems or run.metrics.exists() or run.checkpoints():
        reason = problems[0] if problems else f"{run.last.name} is missing"
        raise CheckpointError(
            f"{run.path}: holds a training run but no checkpoint to resume it from ({reason}); "
            "give --overwrite to train it again from step 0"
        )
    return None


def drop_stale_tokenizers(run: RunDir, cfg: Config) -> None:
    """A new run where an earlier start stopped before its first checkpoint: the sentencepiece
    models that start made go when its config.yaml had other tokenizer settings."""
    models = [p for p in (run.shared_spm, run.src_spm, run.tgt_spm) if p.exists()]
    if not models or not run.config.exists():
        return
    try:
        same = load_config(run.config).tokenizer == cfg.tokenizer
    except TfcliError:
        same = False
    if not same:
        for path in models:
            path.unlink()
        log.info("removed the sentencepiece models of an earlier start with other tokenizer keys")


def reconcile(run: RunDir, ckpt: Checkpoint, best: BestCheckpoints) -> None:
    """Remove what was written after `ckpt` (the checkpoint resumed from); `best` is its list
    of kept checkpoints, trimmed to `best.keep`."""
    _cut_metrics(run, ckpt)
    kept = set(best.steps)
    for step, path in run.step_checkpoints().items():
        if step not in kept:
            path.unlink()
            log.info(
                "removed %s: it is not among the kept checkpoints at step %d", path.name, ckpt.step
            )
    if _later(run.average, ckpt.step):
        run.average.unlink()
    if run.best.exists() and not _later(run.best, ckpt.step):
        return
    top = run.step(best.steps[0]) if best.steps else None
    if top is None or not top.exists():
        run.best.unlink(missing_ok=True)
        return
    log.info("rewriting %s from %s, the best kept checkpoint", run.best.name, top.name)
    save_checkpoint(run.best, dataclasses.replace(load_checkpoint(top), state={}))


def _cut_metrics(run: RunDir, ckpt: Checkpoint) -> None:
    size = ckpt.state.get("metrics_bytes")
    if size is None or not run.metrics.exists():
        return
    actual = run.metrics.stat().st_size
    if actual > size:
        truncate(run.metrics, size, "metrics log")
        log.info("%s: removed the records written after step %d", run.metrics.name, ckpt.step)
    elif actual < size:
        log.warning("%s is shorter than at step %d; left as it is", run.metrics, ckpt.step)


def _later(path: Path, step: int) -> bool:
    """True when the checkpoint at `path` is damaged or from a step after `step`."""
    if not path.exists():
        return False
    try:
        return load_checkpoint(path, with_state=False).step > step
    except CheckpointError:
        return True
