"""Translate lines in batches sorted by length, returning results in input order.

Every input line gives exactly one output: an empty (or whitespace-only) line gives an empty
translation, and a line longer than the model's positions is cut to fit with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from tfcli.checkpoint import build_model, find_checkpoint, load_checkpoint
from tfcli.config import DecodeConfig, config_from_dict, config_to_dict
from tfcli.device import autocast, resolve_device, resolve_precision
from tfcli.model import Transformer
from tfcli.search import Hypothesis, search
from tfcli.tokenizer import EOS_ID, PAD_ID, Tokenizer

log = logging.getLogger(__name__)


@dataclass
class Translator:
    """A model with its tokenizers and search settings, ready to translate text."""

    model: Transformer
    src_tokenizer: Tokenizer
    tgt_tokenizer: Tokenizer
    decode: DecodeConfig
    device: torch.device
    precision: str = "fp32"
    max_sentences: int = 256

    def translate(self, lines: Sequence[str]) -> list[str]:
        """One translation per line, in input order."""
        return [hyps[0].text if hyps else "" for hyps in self.translate_nbest(lines)]

    def translate_nbest(self, lines: Sequence[str]) -> list[list[TextHypothesis]]:
        """The n-best translations (decode.n_best) of each line, in input order."""
        ids = self._encode(lines)
        results: list[list[TextHypothesis]] = [[] for _ in lines]
        for batch_rows in self._batches(ids):
            src = pad_sources([ids[i] for i in batch_rows]).to(self.device)
            with autocast(self.device, self.precision):
                hyps = search(
                    self.model,
                    src,
                    beam=self.decode.beam,
                    alpha=self.decode.length_penalty,
                    max_len_a=self.decode.max_len_a,
                    max_len_b=self.decode.max_len_b,
                    n_best=self.decode.n_best,
                )
            for row, sent in zip(batch_rows, hyps):
                results[row] = [self._text(h) for h in sent]
        return results

    def _text(self, hyp: Hypothesis) -> TextHypothesis:
        return TextHypothesis(self.tgt_tokenizer.decode(hyp.tokens), hyp.score, hyp.tokens)

    def _encode(self, lines: Sequence[str]) -> list[list[int]]:
        """Subword ids per line; empty lines stay empty, long lines are cut to fit."""
        limit = self.model.cfg.max_positions - 1  # room for EOS
        ids = self.src_tokenizer.encode([line.strip() for line in lines])
        for n, seq in enumerate(ids):
            if len(seq) > limit:
                log.warning(
                    "input line %d has %d subwords; only the first %d are translated",
                    n + 1,
                    len(seq),
                    limit,
                )
                ids[n] = seq[:limit]
        return ids

    def _batches(self, ids: Sequence[list[int]]) -> Iterator[list[int]]:
        """Row numbers of non-empty lines, grouped by length under the token budget."""
        order = sorted((i for i, seq in enumerate(ids) if seq), key=lambda i: len(ids[i]))
        batch: list[int] = []
        longest = 0
        for i in order:
            size = len(ids[i]) + 1
            too_big = max(longest, size) * (len(batch) + 1) > self.decode.batch_tokens
            if batch and (too_big or len(batch) >= self.max_sentences):
                yield batch
                batch, longest = [], 0
            batch.append(i)
            longest = max(longest, size)
        if batch:
            yield batch


@dataclass(frozen=True)
class TextHypothesis:
    """A detokenized translation with its score and subword ids."""

    text: str
    score: float
    tokens: list[int]


def pad_sources(seqs: Sequence[list[int]]) -> torch.Tensor:
    """Source id lists -> (B, S) with EOS appended and PAD on the right."""
    src = torch.full((len(seqs), max(len(s) for s in seqs) + 1), PAD_ID, dtype=torch.long)
    for row, seq in enumerate(seqs):
        src[row, : len(seq) + 1] = torch.tensor(seq + [EOS_ID])
    return src


def load_translator(
    run: str | Path,
    device: str = "auto",
    precision: str = "fp32",
    compile: bool = False,
    **decode_overrides: object,
) -> Translator:
    """A `Translator` from a run directory or checkpoint file.

    `precision` is fp32, bf16, fp16 (CUDA) or auto; `compile` runs encoder and decoder through
    torch.compile (slow to start, for long inputs). `decode_overrides` (beam, n_best,
    batch_tokens, ...) replace the checkpoint's decode settings; None values are ignored.
    """
    ckpt = load_checkpoint(find_checkpoint(run), with_state=False)
    dev = resolve_device(device)
    model = build_model(ckpt).to(dev)
    if compile:
        model.encoder = torch.compile(model.encoder, dynamic=True)  # type: ignore[assignment]
        model.decoder = torch.compile(model.decoder, dynamic=True)  # type: ignore[assignment]
    settings = {k: v for k, v in decode_overrides.items() if v is not None}
    decode = ckpt.config.decode
    if settings:
        raw = config_to_dict(ckpt.config)
        raw["decode"].update(settings)
        decode = config_from_dict(raw).decode  # validated like any config
    precision = resolve_precision(precision, dev)
    return Translator(model, ckpt.src_tokenizer, ckpt.tgt_tokenizer, decode, dev, precision)
