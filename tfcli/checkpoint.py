"""Self-describing checkpoints: weights, resolved config, tokenizers, training state.

A checkpoint holds only tensors and plain data (the config as a dict, the sentencepiece models
as bytes) and is read with `torch.load(weights_only=True)`, so a file from someone else cannot
run code. Writes are atomic and durable (atomic.py); reading checks the CRC of every record, so
a truncated or garbled file is refused with its path rather than loaded with wrong weights.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tfcli.atomic import write_atomic
from tfcli.config import Config, config_from_dict, config_to_dict
from tfcli.data.tokenizer import Tokenizer
from tfcli.errors import CheckpointError, ConfigError, DataError, read_error
from tfcli.model.transformer import Transformer
from tfcli.run_dir import RunDir

FORMAT = "tfcli-checkpoint-1"


@dataclass
class Checkpoint:
    """The contents of a checkpoint file."""

    model: dict[str, torch.Tensor]
    config: Config
    src_tokenizer: Tokenizer
    tgt_tokenizer: Tokenizer
    step: int = 0
    state: dict[str, Any] = field(default_factory=dict)  # optimizer, epoch, ... (training only)


def save_checkpoint(path: str | Path, ckpt: Checkpoint) -> None:
    """Write `ckpt` to `path` atomically."""
    path = Path(path)
    payload = {
        "format": FORMAT,
        "model": ckpt.model,
        "config": config_to_dict(ckpt.config),
        "src_tokenizer": ckpt.src_tokenizer.model_bytes,
        "tgt_tokenizer": ckpt.tgt_tokenizer.model_bytes,
        "step": ckpt.step,
        "state": ckpt.state,
    }
    write_atomic(path, lambda f: torch.save(payload, f), "checkpoint")


def _damage(path: Path) -> str | None:
    """Why the zip container torch.save writes is damaged (truncated, a record whose CRC does
    not match), or None when it is whole or not a zip archive at all."""
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            head = f.read(4)
        return "truncated or damaged checkpoint" if head == b"PK\x03\x04" else None
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, EOFError, ValueError) as e:
        return f"truncated or damaged checkpoint ({e})"
    return f"damaged checkpoint: record {bad} fails its CRC check" if bad else None


def load_checkpoint(path: str | Path, with_state: bool = True, mmap: bool = False) -> Checkpoint:
    """Read a checkpoint safely; anything but tensors and plain data is refused.

    `mmap` maps the tensors instead of reading them: for looking at a checkpoint, not using it.
    """
    path = Path(path)
    if mmap and path.is_file() and not zipfile.is_zipfile(path):  # what torch.save writes
        raise CheckpointError(f"{path}: not a tfcli checkpoint")
    try:
        damage = None if mmap else _damage(path)  # a look at a checkpoint reads no weights
        if damage is not None:
            raise CheckpointError(f"{path}: {damage}")
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except OSError as e:
        raise CheckpointError(read_error(path, e, "checkpoint")) from None
    except CheckpointError:
        raise
    except Exception as e:  # a file that is not a checkpoint can make the unpickler raise anything
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{path}: refused: not a tfcli checkpoint or holds more than tensors and plain data "
            f"({first[:160]})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a tfcli checkpoint")
    try:
        config = config_from_dict(payload["config"])
        src_tok = Tokenizer(payload["src_tokenizer"])
        tgt_tok = (
            src_tok
            if payload["tgt_tokenizer"] == payload["src_tokenizer"]
            else Tokenizer(payload["tgt_tokenizer"])
        )
    except (ConfigError, DataError, KeyError) as e:
        raise CheckpointError(f"{path}: damaged checkpoint ({e})") from None
    return Checkpoint(
        payload["model"],
        config,
        src_tok,
        tgt_tok,
        int(payload.get("step", 0)),
        payload.get("state", {}) if with_state else {},
    )


def build_model(ckpt: Checkpoint) -> Transformer:
    """The Transformer described by a checkpoint, with its weights, in eval mode on the CPU."""
    model = Transformer(ckpt.config.model, len(ckpt.src_tokenizer), len(ckpt.tgt_tokenizer))
    try:
        model.load_state_dict(ckpt.model)
    except RuntimeError as e:
        raise CheckpointError(
            f"weights do not fit the model in the checkpoint config ({e})"
        ) from None
    return model.eval()


def find_checkpoint(run: str | Path) -> Path:
    """A checkpoint file itself, or the best (else the last) checkpoint of a run directory."""
    run = Path(run)
    if run.is_file():
        return run
    if not run.is_dir():
        raise CheckpointError(f"{run}: no such run directory or checkpoint file")
    for path in (RunDir(run).best, RunDir(run).last):
        if path.is_file():
            return path
    raise CheckpointError(f"{run}: no checkpoint in this directory (train it with tfcli train)")


def latest_run(root: str | Path = "runs") -> Path:
    """The run directory under `root` whose newest checkpoint was written last."""
    root = Path(root)
    names = (RunDir(".").last.name, RunDir(".").best.name)
    found = [(p.stat().st_mtime, p.parent) for name in names for p in root.glob(f"*/{name}")]
    if not found:
        raise CheckpointError(f"no trained run found under {root}/; give one with -m RUN")
    return max(found)[1]


def average_weights(paths: list[Path]) -> Checkpoint:
    """The element-wise mean of the weights of several checkpoints of one model.

    The result carries the config and tokenizers of the last checkpoint, and no training state.
    """
    if not paths:
        raise CheckpointError("no checkpoints to average")
    ckpts = [load_checkpoint(p, with_state=False) for p in paths]
    keys = ckpts[0].model.keys()
    for p, c in zip(paths, ckpts):
        if c.model.keys() != keys or any(c.model[k].shape != ckpts[0].model[k].shape for k in keys):
            raise CheckpointError(f"{p}: weights do not match {paths[0]}; cannot average")
    mean = {}
    for key in keys:
        tensors = [c.model[key] for c in ckpts]
        if tensors[0].is_floating_point():
            mean[key] = torch.stack([t.float() for t in tensors]).mean(0).to(tensors[0].dtype)
        else:
            mean[key] = tensors[-1]
    last = ckpts[-1]
    return Checkpoint(mean, last.config, last.src_tokenizer, last.tgt_tokenizer, last.step)
