"""Fine-tuning: a new run that starts from a trained model (`train.init_from: RUN|CHECKPOINT`).

The new run takes the model's weights, keeps its tokenizer(s) (written into the new run
directory) and its shape: a model or tokenizer key that differs from the model's is an error
naming the key; dropout may differ, it shapes nothing. The optimizer and the learning-rate
schedule start afresh, unless `train.init_optimizer: true` continues them (Adam's moments, and
the schedule from the model's step: no second warmup).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from tfcli.checkpoint import Checkpoint, find_checkpoint, load_checkpoint
from tfcli.config import Config
from tfcli.data.batching import Batch
from tfcli.data.tokenizer import PAD_ID, UNK_ID, Tokenizer
from tfcli.errors import CheckpointError, ConfigError
from tfcli.run_dir import RunDir
from tfcli.training.config_changes import config_changes

log = logging.getLogger(__name__)

FREE = ("model.dropout", "model.attention_dropout")  # may differ from the model's
TOKENIZER_FILES = {"tokenizer.model": 0, "tokenizer.src_model": 0, "tokenizer.tgt_model": 1}


def init_checkpoint(cfg: Config) -> Checkpoint | None:
    """The checkpoint `train.init_from` names, checked against `cfg`; None without one."""
    t = cfg.train
    if not t.init_from:
        if t.init_optimizer:
            raise ConfigError("train.init_optimizer: only with train.init_from")
        return None
    source = Path(t.init_from)
    # a run's best checkpoint holds weights only; its last one has the optimizer state too
    path = RunDir(source).last if t.init_optimizer and source.is_dir() else None
    try:
        path = path if path is not None and path.is_file() else find_checkpoint(source)
        ckpt = load_checkpoint(path, with_state=t.init_optimizer)
    except CheckpointError as e:
        raise ConfigError(f"train.init_from: {e}") from None
    if t.init_optimizer and "optimizer" not in ckpt.state:
        raise ConfigError(
            f"train.init_optimizer: {path} holds no optimizer state; give a checkpoint_last.pt"
        )
    _check_same_model(ckpt, cfg, path)
    log.info("fine-tuning from %s (step %d)", path, ckpt.step)
    return ckpt


def _check_same_model(ckpt: Checkpoint, cfg: Config, path: Path) -> None:
    tokenizers = (ckpt.src_tokenizer, ckpt.tgt_tokenizer)
    for key, (was, now) in config_changes(ckpt.config, cfg).items():
        section = key.split(".")[0]
        if section not in ("model", "tokenizer") or key in FREE:
            continue
        if key in TOKENIZER_FILES and (
            now is None or _same_file(now, tokenizers[TOKENIZER_FILES[key]])
        ):
            continue  # the tokenizer file named is the model's own
        raise ConfigError(
            f"{key}: {now!r} here, {was!r} in {path}; fine-tuning (train.init_from) keeps the "
            f"model and tokenizer it starts from: set {key} to {was!r} or leave it out"
        )


def _same_file(path: str, tokenizer: Tokenizer) -> bool:
    try:
        return Path(path).read_bytes() == tokenizer.model_bytes
    except OSError:
        return False


def write_tokenizers(ckpt: Checkpoint, run: RunDir, shared: bool) -> None:
    """Put the model's tokenizer(s) into the new run directory, so that training uses them."""
    if shared:
        ckpt.src_tokenizer.save(run.shared_spm)
    else:
        ckpt.src_tokenizer.save(run.src_spm)
        ckpt.tgt_tokenizer.save(run.tgt_spm)


def log_coverage(batches: Sequence[Batch], path: str) -> dict[str, float]:
    """How well the kept tokenizer covers the new corpus: the share of unknown pieces."""
    unknown, tokens = [0, 0], [0, 0]
    for batch in batches:
        for side, ids in enumerate((batch.src, batch.tgt_out)):
            unknown[side] += int((ids == UNK_ID).sum())
            tokens[side] += int((ids != PAD_ID).sum())
    share = {side: unknown[i] / max(tokens[i], 1) for i, side in enumerate(("source", "target"))}
    log.info(
        "%s under the tokenizer of the model: %.2f%% unknown pieces in the source, %.2f%% in "
        "the target",
        path,
        100 * share["source"],
        100 * share["target"],
    )
    return share
