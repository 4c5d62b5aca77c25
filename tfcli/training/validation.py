"""Validation during training: dev loss and BLEU, the metrics log, and the test set at the end.

Rank 0 calls these on its own; nothing here talks to other processes.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from tfcli.atomic import append_line, write_text_atomic
from tfcli.data.batching import Batch
from tfcli.model.kernels import precision_scope
from tfcli.model.loss import LabelSmoothedLoss
from tfcli.model.transformer import Transformer
from tfcli.run_dir import RunDir
from tfcli.translation.scoring import bleu, score
from tfcli.translation.translator import Translator

SAMPLES = 5  # test sentences shown after training

# An evaluation set as text: (source lines, reference lines).
EvalSet = tuple[list[str], list[str]]


def strict(value: object) -> object:
    """`value` for strict JSON: a float that is not finite (NaN, inf) becomes null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    return value


def append_metrics(path: Path, record: dict[str, object]) -> None:
    """One strict JSON record per line of the metrics log, durable before the checkpoint that
    counts it is written. Records are typed by "kind": "train", "valid" or "test"."""
    append_line(path, json.dumps(strict(record), allow_nan=False), "metrics log")


@torch.no_grad()
def dev_loss(
    model: Transformer, batches: Sequence[Batch], device: torch.device, precision: str
) -> float:
    """Cross-entropy (no smoothing) per target token over the dev batches."""
    model.eval()
    loss = LabelSmoothedLoss(model, 0.0)
    total, tokens = 0.0, 0
    for batch in batches:
        batch = batch.to(device)
        with precision_scope(device, precision):
            total += float(loss(batch.src, batch.tgt_in, batch.tgt_out))
        tokens += batch.tgt_tokens
    return total / max(tokens, 1)


def dev_bleu(translator: Translator, dev: EvalSet, sentences: int) -> float:
    """BLEU of the first `sentences` dev sentences (0: all)."""
    n = sentences or len(dev[0])
    return bleu(translator.translate(dev[0][:n]), dev[1][:n])


def translate_test_set(
    translator: Translator, test: EvalSet, run: RunDir, step: int
) -> tuple[dict[str, object], list[tuple[str, str, str]]]:
    """Translate the test set: write test.hyp and the scores to the metrics log; return the
    scores and SAMPLES (source, reference, output) triples spread over the set."""
    t0 = time.monotonic()
    hyps = translator.translate(test[0])
    result = score(hyps, test[1]).as_dict() | {"decode_s": round(time.monotonic() - t0, 1)}
    write_text_atomic(run.test_hyp, "".join(h + "\n" for h in hyps), "test translations")
    append_metrics(run.metrics, {"kind": "test", "step": step, "test": result})
    every = max(1, len(hyps) // SAMPLES)
    picks = range(0, min(len(hyps), every * SAMPLES), every)
    return result, [(test[0][i], test[1][i], hyps[i]) for i in picks]
