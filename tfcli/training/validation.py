"""Validation during training: dev loss and BLEU, the metrics log, and the test set at the end.

Rank 0 calls these on its own; nothing here talks to other processes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from tfcli.atomic import append_line, write_text_atomic
from tfcli.checkpoint import Checkpoint, build_model, load_checkpoint
from tfcli.config import Config
from tfcli.data.batching import Batch
from tfcli.model.kernels import precision_scope
from tfcli.model.loss import LabelSmoothedLoss
from tfcli.model.transformer import Transformer
from tfcli.run_dir import RunDir
from tfcli.translation.scoring import bleu, score
from tfcli.translation.translator import Translator

if TYPE_CHECKING:
    from tfcli.training.training_data import TrainingData

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


def train_record(step: int, epoch: int, stats: dict[str, float]) -> dict[str, object]:
    """The metrics record of the training loss and rate at a log step."""
    record: dict[str, object] = {"kind": "train", "step": step, "epoch": epoch}
    record["train_loss"] = round(stats["loss"], 4)
    record["lr"] = stats["lr"]
    record["tgt_tok_s"] = round(stats["tgt_tok_s"])
    return record


def valid_record(step: int, epoch: int, train_loss: float | None) -> dict[str, object]:
    """The start of a validation's record; train_loss: the last logged one (null: none yet)."""
    loss = None if train_loss is None else round(train_loss, 4)
    return {"kind": "valid", "step": step, "epoch": epoch, "train_loss": loss}


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


class Evaluator:
    """A run's dev scores and test set: the run's data, decoding settings and device."""

    def __init__(
        self, cfg: Config, data: TrainingData, device: torch.device, precision: str
    ) -> None:
        self.cfg, self.data, self.device, self.precision = cfg, data, device, precision

    def translator(self, model: Transformer, beam: int) -> Translator:
        settings = dataclasses.replace(self.cfg.decode, beam=beam, n_best=1)
        src_tok, tgt_tok = self.data.src_tok, self.data.tgt_tok
        return Translator(model, src_tok, tgt_tok, settings, self.device, self.precision)

    def model_of(self, ckpt: Checkpoint) -> Transformer:
        return build_model(ckpt).to(self.device)

    def dev_bleu(self, model: Transformer) -> float:
        assert self.data.dev is not None
        t = self.cfg.train
        return dev_bleu(self.translator(model, t.valid_beam), self.data.dev, t.valid_bleu_sentences)

    def dev_scores(self, model: Transformer, record: dict[str, object]) -> float | None:
        """Dev loss, perplexity and BLEU into `record`; returns the BLEU (None: no dev set)."""
        if self.data.dev is None:
            return None
        loss = dev_loss(model, self.data.dev_batches, self.device, self.precision)
        bleu_score = self.dev_bleu(model)
        record["dev_loss"] = round(loss, 4)
        record["dev_ppl"] = round(math.exp(min(loss, 50.0)), 2)
        record["dev_bleu"] = round(bleu_score, 2)
        return bleu_score

    def test(
        self, model: Transformer, run: RunDir, step: int
    ) -> tuple[dict[str, object] | None, list[tuple[str, str, str]]]:
        """Translate the test set with the best checkpoint (else `model`); scores, samples."""
        from tfcli.training.training_data import read_eval_set

        test = read_eval_set(self.cfg.data, self.cfg.data.test)
        if test is None:
            return None, []
        if run.best.exists():
            model = self.model_of(load_checkpoint(run.best, with_state=False))
        translator = self.translator(model.eval(), self.cfg.decode.beam)
        return translate_test_set(translator, test, run, step)
