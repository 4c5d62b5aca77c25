"""Validation during training: dev loss and BLEU, the metrics log, which checkpoints to keep,
and the test set at the end.

Rank 0 calls these on its own; nothing here talks to other processes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from tfcli.data import Batch
from tfcli.device import autocast
from tfcli.evaluate import bleu, score
from tfcli.model import Transformer
from tfcli.translate import Translator

METRICS = "metrics.jsonl"  # one JSON record per validation, and the test scores last
SAMPLES = 5  # test sentences shown after training


def append_metrics(run_dir: Path, record: dict[str, object]) -> None:
    with open(run_dir / METRICS, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


@torch.no_grad()
def dev_loss(
    model: Transformer, batches: Sequence[Batch], device: torch.device, precision: str
) -> float:
    """Cross-entropy (no smoothing) per target token over the dev batches."""
    model.eval()
    total, tokens = 0.0, 0
    for batch in batches:
        batch = batch.to(device)
        with autocast(device, precision):
            total += float(model(batch.src, batch.tgt_in, batch.tgt_out, 0.0))
        tokens += batch.tgt_tokens
    return total / max(tokens, 1)


def dev_bleu(translator: Translator, dev: tuple[list[str], list[str]], sentences: int) -> float:
    """BLEU of the first `sentences` dev sentences (0: all)."""
    n = sentences or len(dev[0])
    return bleu(translator.translate(dev[0][:n]), dev[1][:n])


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


def translate_test_set(
    translator: Translator, test: tuple[list[str], list[str]], run_dir: Path, step: int
) -> tuple[dict[str, object], list[tuple[str, str, str]]]:
    """Translate the test set: write test.hyp and the scores to the metrics log; return the
    scores and SAMPLES (source, reference, output) triples spread over the set."""
    t0 = time.monotonic()
    hyps = translator.translate(test[0])
    result = score(hyps, test[1]).as_dict() | {"decode_s": round(time.monotonic() - t0, 1)}
    (run_dir / "test.hyp").write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
    append_metrics(run_dir, {"step": step, "test": result})
    every = max(1, len(hyps) // SAMPLES)
    picks = range(0, min(len(hyps), every * SAMPLES), every)
    return result, [(test[0][i], test[1][i], hyps[i]) for i in picks]
