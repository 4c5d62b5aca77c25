"""What a training run reads before its first update: the tokenizers (trained into the run
directory when needed), the training pairs as a prepared corpus (encoded once by process 0,
memory-mapped by every process), and the dev set, tokenized and batched once for every
validation."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tfcli.config import Config, DataConfig
from tfcli.data.batching import Batch, batch_by_tokens, collate
from tfcli.data.index_batching import EpochBatches
from tfcli.data.pairs import make_examples
from tfcli.data.preparation import Progress, prepare_corpus, training_paths
from tfcli.data.prepared import PreparedCorpus
from tfcli.data.text import read_parallel, resolve_path
from tfcli.data.tokenizer import Tokenizer, load_run_tokenizers
from tfcli.errors import ConfigError
from tfcli.run_dir import RunDir
from tfcli.training.distributed import Distributed
from tfcli.training.validation import EvalSet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingData:
    src_tok: Tokenizer
    tgt_tok: Tokenizer
    train: PreparedCorpus
    dev: EvalSet | None  # for dev BLEU
    dev_batches: list[Batch]  # for dev loss; empty without a dev set
    batch_tokens: int
    seed: int

    def epoch(self, epoch: int) -> EpochBatches:
        """The training batches of `epoch`, in the order that (seed, epoch) gives them (those
        of `batching.epoch_batches`), each padded when it is taken."""
        return EpochBatches.of_epoch(self.train, self.batch_tokens, self.seed, epoch)


def read_eval_set(d: DataConfig, prefix: str | None) -> EvalSet | None:
    """The pair of files `prefix`.{src_lang,tgt_lang}, or None when no prefix is set."""
    if not prefix:
        return None
    return read_parallel(resolve_path(prefix, d.src_lang), resolve_path(prefix, d.tgt_lang))


def open_training_corpus(
    cfg: Config, run: RunDir, dist: Distributed, progress: Progress | None = None
) -> PreparedCorpus:
    """Process 0 prepares the tokenizers and the training pairs (or finds them prepared); the
    others wait for it, then every process memory-maps the same files."""
    found = dist.main_does(lambda: prepare_corpus(cfg, run, progress))
    directory = dist.from_main(found)
    dist.barrier()
    corpus = PreparedCorpus(directory)
    src_path, tgt_path = training_paths(cfg)
    log.info("training data %s: %s", src_path.with_suffix(""), corpus.report)
    if not len(corpus):
        raise ConfigError(f"data.train: no usable sentence pairs in {src_path} / {tgt_path}")
    return corpus


def load_training_data(cfg: Config, run: RunDir, dist: Distributed) -> TrainingData:
    """The prepared training pairs (prepared now when needed), the run's tokenizers and the dev
    set; refuses a config whose training data is missing or unusable."""
    train = open_training_corpus(cfg, run, dist)
    src_tok, tgt_tok = load_run_tokenizers(run)
    dev = read_eval_set(cfg.data, cfg.data.dev)
    dev_batches: list[Batch] = []
    if dev is not None:
        examples, _ = make_examples(dev[0], dev[1], src_tok, tgt_tok)
        dev_batches = [collate(g) for g in batch_by_tokens(examples, cfg.train.batch_tokens)]
    t = cfg.train
    return TrainingData(src_tok, tgt_tok, train, dev, dev_batches, t.batch_tokens, t.seed)
