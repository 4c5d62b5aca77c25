"""What bench_translate.py decodes: the checkpoint under test and the test sentences, cut into
length-sorted batches of BATCH_SENTENCES and tokenized ahead of timing."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from common import ROOT, bench_tokenizer, model_shape

from tfcli.checkpoint import (
    Checkpoint,
    build_model,
    find_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from tfcli.config import DecodeConfig
from tfcli.data.batching import pad_sources
from tfcli.data.tokenizer import Tokenizer
from tfcli.model.transformer import Transformer
from tfcli.run_dir import RunDir
from tfcli.translation.search import max_lengths

BATCH_SENTENCES = 32


# --- the model ---------------------------------------------------------------------------------


@dataclass
class Subject:
    """The checkpoint under test, loaded, with the run directory the CLI can read."""

    model: Transformer
    src_tok: Tokenizer
    tgt_tok: Tokenizer
    decode: DecodeConfig
    run: Path
    random: bool


def load_subject(
    model: Path | None, random_model: bool, workdir: Path, device: torch.device
) -> Subject:
    """The run `model` (default runs/quickstart), or random weights when asked or when there
    is no trained run (saved under `workdir`, so that `tfcli translate` can load them too)."""
    default = ROOT / "runs" / "quickstart"
    if not random_model and (model is not None or default.exists()):
        ckpt = load_checkpoint(find_checkpoint(model or default), with_state=False)
        run = model or default
        random_weights = False
    else:
        if not random_model:
            print("note: no trained run at runs/quickstart; using random weights", file=sys.stderr)
        ckpt = random_checkpoint()
        run = workdir / "random-run"
        run.mkdir()
        save_checkpoint(RunDir(run).best, ckpt)
        random_weights = True
    return Subject(
        build_model(ckpt).to(device),
        ckpt.src_tokenizer,
        ckpt.tgt_tokenizer,
        ckpt.config.decode,
        run,
        random_weights,
    )


def random_checkpoint(shape_name: str = "quickstart") -> Checkpoint:
    """A shape of configs/ with its initial (random) weights and a tokenizer for the corpus
    (of the config's vocabulary size, or as many subwords as the bundled corpus supports)."""
    shape = model_shape(shape_name)
    tok = bench_tokenizer(shape.vocab)
    torch.manual_seed(1)
    model = Transformer(shape.model, len(tok), len(tok))
    return Checkpoint(model.state_dict(), shape.config, tok, tok)


def base_checkpoint_run(workdir: Path) -> Path:
    """A run directory under `workdir` holding the configs/base.yaml shape, random weights."""
    run = workdir / "random-base"
    run.mkdir()
    save_checkpoint(RunDir(run).best, random_checkpoint("base"))
    return run


@dataclass
class Workload:
    """The test sentences as length-sorted batches, tokenized ahead of timing.

    `limits`: the longest output per batch, EOS included: decode.max_len_a * S + max_len_b for
    the batch's longest source S. Every system gets this one limit per batch, because
    CTranslate2's translate_batch takes a single max_decoding_length.
    """

    ids: list[torch.Tensor]  # (B, S) per batch: ids + EOS, right-padded
    pieces: list[list[list[str]]]  # the same sources as sentencepiece pieces
    limits: list[int]

    def shortest(self) -> Workload:
        """The batch of the shortest sentences only (a cheap warm-up)."""
        return Workload(self.ids[-1:], self.pieces[-1:], self.limits[-1:])

    def spread(self, sentences: int) -> Workload:
        """Every k-th batch, about `sentences` sentences over the whole length range (0: all)."""
        if sentences <= 0 or sentences >= BATCH_SENTENCES * len(self.ids):
            return self
        k = math.ceil(len(self.ids) / math.ceil(sentences / BATCH_SENTENCES))
        pick = slice(k // 2, None, k)  # the middle batch of every k
        return Workload(self.ids[pick], self.pieces[pick], self.limits[pick])


def make_workload(subject: Subject, lines: list[str], device: torch.device) -> Workload:
    cfg, decode, tok = subject.model.cfg, subject.decode, subject.src_tok
    ids = [s[: cfg.max_positions - 1] for s in tok.encode(lines) if s]
    ids.sort(key=len, reverse=True)
    batches = [ids[i : i + BATCH_SENTENCES] for i in range(0, len(ids), BATCH_SENTENCES)]
    tensors = [pad_sources(b).to(device) for b in batches]
    limits = [
        int(max_lengths(t, decode.max_len_a, decode.max_len_b, cfg.max_positions).max())
        for t in tensors
    ]
    pieces = [[[tok.sp.id_to_piece(i) for i in s] for s in b] for b in batches]
    return Workload(tensors, pieces, limits)
