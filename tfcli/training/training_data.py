"""What a training run reads before its first update: the tokenizers (trained into the run
directory when needed), the training pairs as token ids, and the dev set, tokenized and
batched once for every validation."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tfcli.config import Config, DataConfig
from tfcli.data.batching import Batch, batch_by_tokens, collate, epoch_batches
from tfcli.data.pairs import Example, make_examples
from tfcli.data.text import read_parallel, resolve_path
from tfcli.data.tokenizer import Tokenizer, load_run_tokenizers, prepare_tokenizers
from tfcli.errors import ConfigError
from tfcli.run_dir import RunDir
from tfcli.training.distributed import Distributed
from tfcli.training.validation import EvalSet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingData:
    src_tok: Tokenizer
    tgt_tok: Tokenizer
    train: list[Example]
    dev: EvalSet | None  # for dev BLEU
    dev_batches: list[Batch]  # for dev loss; empty without a dev set
    batch_tokens: int
    seed: int

    def epoch(self, epoch: int) -> list[Batch]:
        """The training batches of `epoch`, in the order that (seed, epoch) gives them."""
        return list(epoch_batches(self.train, self.batch_tokens, self.seed, epoch))


def read_eval_set(d: DataConfig, prefix: str | None) -> EvalSet | None:
    """The pair of files `prefix`.{src_lang,tgt_lang}, or None when no prefix is set."""
    if not prefix:
        return None
    return read_parallel(resolve_path(prefix, d.src_lang), resolve_path(prefix, d.tgt_lang))


def load_training_data(cfg: Config, run: RunDir, dist: Distributed) -> TrainingData:
    """Read the corpus, prepare the tokenizers (rank 0 trains them, every rank loads them from
    the run directory) and tokenize; refuses a config whose training data is missing or
    unusable."""
    d = cfg.data
    if not d.train:
        raise ConfigError("data.train: no training data given (a prefix like data/de-en/train)")
    src_path, tgt_path = resolve_path(d.train, d.src_lang), resolve_path(d.train, d.tgt_lang)
    src_lines, tgt_lines = read_parallel(src_path, tgt_path)
    if dist.main:
        prepare_tokenizers(cfg.tokenizer, run, src_lines, tgt_lines)
    dist.barrier()
    src_tok, tgt_tok = load_run_tokenizers(run)
    train, report = make_examples(
        src_lines, tgt_lines, src_tok, tgt_tok, d.max_len, d.max_len_ratio
    )
    log.info("training data %s: %s", src_path.with_suffix(""), report)
    if not train:
        raise ConfigError(f"data.train: no usable sentence pairs in {src_path} / {tgt_path}")
    dev = read_eval_set(d, d.dev)
    dev_batches: list[Batch] = []
    if dev is not None:
        examples, _ = make_examples(dev[0], dev[1], src_tok, tgt_tok)
        dev_batches = [collate(g) for g in batch_by_tokens(examples, cfg.train.batch_tokens)]
    t = cfg.train
    return TrainingData(src_tok, tgt_tok, train, dev, dev_batches, t.batch_tokens, t.seed)
