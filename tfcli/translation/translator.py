"""Translate lines in batches sorted by length, returning results in input order.

Every input line gives exactly one output: an empty (or whitespace-only) line gives an empty
translation, and a line longer than the model's positions is cut to fit with a warning. A
translation never holds a line break (any character that some reader splits lines at): each is
written as a space, so output line N is always the translation of input line N.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from tfcli.checkpoint import build_model, find_checkpoint, load_checkpoint
from tfcli.config import DecodeConfig
from tfcli.data.batching import pad_sources, token_batches
from tfcli.data.tokenizer import Tokenizer
from tfcli.device import DTYPES, resolve_device, resolve_inference_precision
from tfcli.model.int8 import quantize_linears
from tfcli.model.kernels import configure_threads_and_kernels, precision_scope
from tfcli.model.transformer import Transformer
from tfcli.translation.search import Hypothesis, search

log = logging.getLogger(__name__)

# Every character that str.splitlines() or some other reader takes for a line break.
_LINE_BREAKS = str.maketrans(dict.fromkeys("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029", " "))


def one_line(text: str) -> str:
    """`text` with each line-break character replaced by a space."""
    return text.translate(_LINE_BREAKS)


@dataclass(frozen=True)
class TextHypothesis:
    """A detokenized translation with its score and subword ids."""

    text: str
    score: float
    tokens: list[int]


@dataclass
class Translator:
    """A model with its tokenizers and search settings, ready to translate text."""

    model: Transformer
    src_tokenizer: Tokenizer
    tgt_tokenizer: Tokenizer
    settings: DecodeConfig
    device: torch.device
    precision: str  # resolved: fp32, bf16, fp16 or int8

    @property
    def autocast_precision(self) -> str:
        """The precision to autocast to: none (fp32) when the weights are already in theirs."""
        dtype = self.model.encoder.embed.tokens.weight.dtype
        return "fp32" if self.precision == "int8" or dtype != torch.float32 else self.precision

    def translate(self, lines: Sequence[str]) -> list[str]:
        """One translation per line, in input order."""
        return [hyps[0].text if hyps else "" for hyps in self.translate_nbest(lines)]

    def translate_nbest(
        self,
        lines: Sequence[str],
        numbers: Sequence[int] | None = None,
        ready: Callable[[int, list[TextHypothesis]], None] | None = None,
    ) -> list[list[TextHypothesis]]:
        """The n-best translations (settings.n_best) of each line, in input order; an empty
        line gets an empty list. `numbers` are the lines' numbers in the input, for warnings
        (default 1, 2, ...). `ready(i, hypotheses)`, when given, is called for each line i as
        soon as its translation is done, before the rest of its batch."""
        ids = self.encode(lines, numbers)
        results: list[list[TextHypothesis]] = [[] for _ in lines]
        if ready is not None:
            for i in (i for i, seq in enumerate(ids) if not seq):
                ready(i, [])
        order = sorted((i for i, seq in enumerate(ids) if seq), key=lambda i: len(ids[i]))
        sizes = [len(seq) + 1 for seq in ids]  # + EOS
        s = self.settings
        for rows in token_batches(order, sizes, s.batch_tokens, s.batch_sentences):

            def finished(done: list[int], hyps: list[list[Hypothesis]], rows=rows) -> None:
                for n, sent in zip(done, hyps):
                    results[rows[n]] = [self._text(h) for h in sent]
                    if ready is not None:
                        ready(rows[n], results[rows[n]])

            src = pad_sources([ids[i] for i in rows]).to(self.device)
            with precision_scope(self.device, self.autocast_precision):
                search(self.model, src, s, finished)
        return results

    def _text(self, hyp: Hypothesis) -> TextHypothesis:
        text = one_line(self.tgt_tokenizer.decode(hyp.tokens))
        return TextHypothesis(text, hyp.score, hyp.tokens)

    def encode(self, lines: Sequence[str], numbers: Sequence[int] | None = None) -> list[list[int]]:
        """Subword ids per line; empty lines stay empty, long lines are cut to fit (a warning
        names the line by its entry in `numbers`, default 1, 2, ...)."""
        limit = self.model.cfg.max_positions - 1  # room for EOS
        ids = self.src_tokenizer.encode([line.strip() for line in lines])
        for n, seq in enumerate(ids):
            if len(seq) > limit:
                log.warning(
                    "input line %d has %d subwords; only the first %d are translated",
                    numbers[n] if numbers is not None else n + 1,
                    len(seq),
                    limit,
                )
                ids[n] = seq[:limit]
        return ids


def decode_settings(base: DecodeConfig, **overrides: object) -> DecodeConfig:
    """`base` with the `overrides` that are not None, validated as any config.

    An n-best list longer than the run's beam, with no beam given, widens the beam to it.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    n_best = given.get("n_best")
    if "beam" not in given and isinstance(n_best, int) and n_best > base.beam:
        given["beam"] = n_best
    return dataclasses.replace(base, **given)


def load_translator(run: str | Path, compile: bool = False, **overrides: object) -> Translator:
    """A `Translator` from a run directory or checkpoint file.

    `overrides` (beam, n_best, batch_tokens, device, precision, ...) replace the checkpoint's
    decode settings; None values keep them. `compile` runs encoder and decoder through
    torch.compile (slow to start, for long inputs).
    """
    configure_threads_and_kernels()
    ckpt = load_checkpoint(find_checkpoint(run), with_state=False)
    settings = decode_settings(ckpt.config.decode, **overrides)
    device = resolve_device(settings.device)
    precision = resolve_inference_precision(settings.precision, device)
    model = inference_model(build_model(ckpt).to(device), precision)
    if compile:
        model.encoder = torch.compile(model.encoder, dynamic=True)  # type: ignore[assignment]
        model.decoder = torch.compile(model.decoder, dynamic=True)  # type: ignore[assignment]
    return Translator(model, ckpt.src_tokenizer, ckpt.tgt_tokenizer, settings, device, precision)


def inference_model(model: Transformer, precision: str) -> Transformer:
    """`model` made ready for `precision` once, at load: int8 linear layers, or the weights
    cast to bf16/fp16 (no autocast per operation; the positional table stays fp32)."""
    if precision == "int8":
        return quantize_linears(model)
    if precision in DTYPES:
        for p in model.parameters():
            p.data = p.data.to(DTYPES[precision])
    return model
