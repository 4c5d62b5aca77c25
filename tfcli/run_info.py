"""What a run directory or checkpoint holds: the model, its tokenizers, how long it trained
and how well it scores, and its files, read without building the model.

The checkpoint is memory-mapped (`torch.load(mmap=True, weights_only=True)`): its tensors'
shapes are read, not their data, so this is fast for any model size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tfcli.checkpoint import Checkpoint, find_checkpoint, load_checkpoint
from tfcli.config import config_to_dict
from tfcli.errors import CheckpointError
from tfcli.metrics_log import MetricsLog, read_metrics
from tfcli.run_dir import RunDir


def count_weights(weights: dict[str, Any]) -> int:
    """Parameters in a state dict, each tensor shared between keys (tied embeddings) once."""
    seen, total = set(), 0
    for tensor in weights.values():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if key not in seen:
            seen.add(key)
            total += tensor.numel()
    return total


def describe(path: str | Path) -> dict[str, Any]:
    """Facts about a run directory (its best checkpoint, training state, metrics and files)
    or one checkpoint file, as plain data."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such run directory or checkpoint file")
    chosen = find_checkpoint(path)
    ckpt = load_checkpoint(chosen, mmap=True)
    run = RunDir(path) if path.is_dir() else None
    last = ckpt
    if run is not None and run.last.is_file() and run.last != chosen:
        last = load_checkpoint(run.last, mmap=True)
    log = read_metrics(run.metrics) if run is not None and run.metrics.is_file() else MetricsLog()
    steps = {chosen: ckpt.step} | ({run.last: last.step} if run is not None else {})
    files = _files(path if run is not None else chosen, steps)
    return {
        "path": str(path),
        "checkpoint": {"file": chosen.name, "step": ckpt.step},
        **model_facts(ckpt),
        "training": _training(last),
        "dev": _dev(ckpt, log),
        "test": log.test[-1]["test"] if log.test else None,
        "size_bytes": sum(f["bytes"] for f in files),
        "files": files,
    }


def model_facts(ckpt: Checkpoint) -> dict[str, Any]:
    """Languages, parameters, the model and tokenizer settings and the vocabulary sizes."""
    cfg = config_to_dict(ckpt.config)
    return {
        "languages": {"source": ckpt.config.data.src_lang, "target": ckpt.config.data.tgt_lang},
        "parameters": count_weights(ckpt.model),
        "model": cfg["model"],
        "tokenizer": cfg["tokenizer"],
        "vocabulary": {
            "source": len(ckpt.src_tokenizer),
            "target": len(ckpt.tgt_tokenizer),
            "shared": ckpt.src_tokenizer is ckpt.tgt_tokenizer,
        },
    }


def _training(last: Checkpoint) -> dict[str, Any]:
    """Updates, epochs and time trained, from the checkpoint that carries the training state."""
    state = last.state
    return {
        "steps": last.step,
        "epochs_completed": state.get("epoch"),
        "batches_into_epoch": state.get("batch_in_epoch"),
        "seconds": round(state["elapsed"], 1) if "elapsed" in state else None,
    }


def _dev(ckpt: Checkpoint, log: MetricsLog) -> dict[str, Any] | None:
    """The best dev BLEU, how it was decoded, and its sacrebleu signature."""
    from tfcli.translation.scoring import bleu_signature

    best = log.best_valid()
    if best is None:
        return None
    train = ckpt.config.train
    beam = train.valid_beam
    return {
        "bleu": best["dev_bleu"],
        "step": best.get("step"),
        "dev_loss": best.get("dev_loss"),
        "decoding": "greedy" if beam == 1 else f"beam {beam}",
        "sentences": train.valid_bleu_sentences or "all",
        "signature": bleu_signature(),
    }


def _files(where: Path, steps: dict[Path, int]) -> list[dict[str, Any]]:
    """The files of a run directory (or the one checkpoint file), with their sizes, and the
    step of each checkpoint when known."""
    paths = sorted(p for p in where.iterdir() if p.is_file()) if where.is_dir() else [where]
    run = RunDir(where if where.is_dir() else where.parent)
    by_step = {p: s for s, p in run.step_checkpoints().items()}
    out = []
    for p in paths:
        if p.name.startswith("."):  # a checkpoint being written
            continue
        entry: dict[str, Any] = {"file": p.name, "bytes": p.stat().st_size}
        step = steps.get(p, by_step.get(p))
        if step is not None:
            entry["step"] = step
        out.append(entry)
    return out
