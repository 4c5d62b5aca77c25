"""Shared fixtures: a toy German-English corpus, a tiny tokenizer, tiny models.

Everything is small enough to run on one CPU core in well under a second per test.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest
import torch

from tfcli.config import ModelConfig, TokenizerConfig
from tfcli.data.batching import Batch, collate
from tfcli.data.pairs import make_examples
from tfcli.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, Tokenizer, train_tokenizer
from tfcli.model.transformer import Transformer

torch.set_num_threads(1)

_SUBJECTS = [
    ("der hund", "the dog"),
    ("die katze", "the cat"),
    ("das kind", "the child"),
    ("die frau", "the woman"),
    ("der mann", "the man"),
]
_VERBS = [
    ("sieht", "sees"),
    ("mag", "likes"),
    ("findet", "finds"),
    ("hört", "hears"),
    ("ruft", "calls"),
]
_OBJECTS = [
    ("den ball .", "the ball ."),
    ("das haus .", "the house ."),
    ("einen baum .", "a tree ."),
    ("das wasser .", "the water ."),
    ("den vogel .", "the bird ."),
]


def _corpus() -> tuple[list[str], list[str]]:
    """63 made-up sentence pairs of the form subject-verb-object."""
    pairs = [
        (f"{s[0]} {v[0]} {o[0]}", f"{s[1]} {v[1]} {o[1]}")
        for s, v, o in itertools.product(_SUBJECTS, _VERBS, _OBJECTS)
    ][::2]
    return [p[0] for p in pairs], [p[1] for p in pairs]


@pytest.fixture(scope="session")
def corpus() -> tuple[list[str], list[str]]:
    """Parallel (German, English) lines."""
    return _corpus()


@pytest.fixture(scope="session")
def tokenizer(corpus) -> Tokenizer:
    """A shared sentencepiece model trained on both sides of the toy corpus."""
    src, tgt = corpus
    return train_tokenizer(src + tgt, TokenizerConfig(vocab_size=48))


@pytest.fixture(scope="session")
def model_cfg() -> ModelConfig:
    """A tiny Transformer: width 32, 2 heads, 2+2 layers."""
    return ModelConfig(
        d_model=32,
        heads=2,
        d_ff=64,
        encoder_layers=2,
        decoder_layers=2,
        dropout=0.1,
        attention_dropout=0.1,
        max_positions=64,
    )


VOCAB = 40  # vocabulary of the randomly initialised models


def _make_model(cfg: ModelConfig, seed: int = 0, vocab: int = VOCAB) -> Transformer:
    """A randomly initialised model in eval mode."""
    torch.manual_seed(seed)
    return Transformer(cfg, vocab, vocab).eval()


def _random_src(lengths: list[int], seed: int = 0, vocab: int = VOCAB) -> torch.Tensor:
    """A right-padded (B, S) batch of random source ids ending in EOS, one row per length.

    `lengths` counts the tokens without EOS.
    """
    g = torch.Generator().manual_seed(seed)
    src = torch.full((len(lengths), max(lengths) + 1), PAD_ID, dtype=torch.long)
    for row, n in enumerate(lengths):
        src[row, :n] = torch.randint(EOS_ID + 1, vocab, (n,), generator=g)
        src[row, n] = EOS_ID
    return src


def random_tgt(b: int, t: int, seed: int = 1, vocab: int = VOCAB) -> torch.Tensor:
    """(B, T) random target ids starting with BOS."""
    g = torch.Generator().manual_seed(seed)
    tgt = torch.randint(EOS_ID + 1, vocab, (b, t), generator=g)
    tgt[:, 0] = BOS_ID
    return tgt


@pytest.fixture(scope="session")
def make_model():
    """make_model(cfg, seed=0, vocab=VOCAB) -> a random Transformer in eval mode."""
    return _make_model


@pytest.fixture(scope="session")
def random_src():
    """random_src(lengths, seed=0, vocab=VOCAB) -> (B, S) ids ending in EOS, PAD on the right."""
    return _random_src


@pytest.fixture
def tiny_model(model_cfg) -> Transformer:
    """A random tiny model (seed 0, vocabulary VOCAB) in eval mode."""
    return _make_model(model_cfg)


@dataclass
class Overfit:
    """A tiny model trained to memorise one batch, with its loss curve."""

    model: Transformer
    batch: Batch
    targets: list[list[int]]
    first_loss: float
    last_loss: float
    sources: list[str]  # the memorised pairs as text
    translations: list[str]


@pytest.fixture(scope="session")
def overfit(corpus, tokenizer) -> Overfit:
    """Train a tiny dropout-free model on four sentence pairs until it has memorised them."""
    src_lines, tgt_lines = corpus
    picks = [0, 7, 20, 41]
    examples, _ = make_examples(
        [src_lines[i] for i in picks], [tgt_lines[i] for i in picks], tokenizer, tokenizer
    )
    batch = collate(examples)
    cfg = ModelConfig(
        d_model=32,
        heads=2,
        d_ff=64,
        encoder_layers=1,
        decoder_layers=1,
        dropout=0.0,
        max_positions=64,
    )
    torch.manual_seed(0)
    model = Transformer(cfg, len(tokenizer), len(tokenizer))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    model.train()
    for _ in range(150):
        logits = model(batch.src, batch.tgt_in)  # (B, T, V)
        loss = torch.nn.functional.cross_entropy(
            logits.flatten(0, 1), batch.tgt_out.flatten(), ignore_index=PAD_ID
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    targets = [e.tgt for e in examples]
    sources = [src_lines[i] for i in picks]
    texts = [tokenizer.decode(t) for t in targets]
    return Overfit(model, batch, targets, losses[0], losses[-1], sources, texts)


@pytest.fixture(scope="session")
def memorized_run(tmp_path_factory, overfit, tokenizer):
    """A run directory holding the memorising model: four sentences, four different outputs.

    What it says for each of `overfit.sources` is `overfit.translations`, so a translation
    that reaches the wrong line shows.
    """
    from tfcli.checkpoint import Checkpoint, save_checkpoint
    from tfcli.config import Config
    from tfcli.run_dir import RunDir

    run = RunDir(tmp_path_factory.mktemp("memorized"))
    config = Config(model=overfit.model.cfg)
    save_checkpoint(run.best, Checkpoint(overfit.model.state_dict(), config, tokenizer, tokenizer))
    assert len(set(overfit.translations)) == len(overfit.translations)
    return run.path


# --- a tiny end-to-end setup: a slice of the bundled corpus and a config to train on ----------

TINY_CONFIG = """\
data:
  train: {root}/train
  dev: {root}/dev
  test: {root}/test
  max_len: 64
tokenizer:
  vocab_size: 500
model:
  d_model: 32
  heads: 2
  d_ff: 64
  encoder_layers: 1
  decoder_layers: 1
  dropout: 0.0
  max_positions: 128
train:
  device: cpu
  precision: fp32
  batch_tokens: 600
  lr: 3.0e-3
  warmup_steps: 5
  label_smoothing: 0.0
  max_steps: 40
  valid_every: 10
  log_every: 5
  threads: 1
decode:
  beam: 2
  max_len_a: 1.0
  max_len_b: 5
"""


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """The first 300 training pairs, 20 dev and 20 test pairs of the bundled corpus."""
    from pathlib import Path

    data = Path(__file__).resolve().parents[1] / "data" / "de-en"
    root = tmp_path_factory.mktemp("corpus")
    for split, n in (("train", 300), ("dev", 20), ("test", 20)):
        for lang in ("de", "en"):
            lines = (data / f"{split}.{lang}").read_text(encoding="utf-8").splitlines()[:n]
            (root / f"{split}.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def tiny_config(tiny_corpus):
    """A YAML config for a width-32, 1+1 layer model trained for 40 steps on `tiny_corpus`."""
    path = tiny_corpus / "tiny.yaml"
    path.write_text(TINY_CONFIG.format(root=tiny_corpus), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def spm_model(tmp_path_factory, tiny_corpus):
    """The tiny config's sentencepiece model, trained once for every training run."""
    from tfcli.data.text import read_parallel

    src, tgt = read_parallel(tiny_corpus / "train.de", tiny_corpus / "train.en")
    path = tmp_path_factory.mktemp("spm") / "spm.model"
    train_tokenizer(src + tgt, TokenizerConfig(vocab_size=500)).save(path)
    return path


@pytest.fixture
def make_cfg(tiny_config, spm_model):
    """make_cfg(*overrides) -> the tiny config with the shared tokenizer and no test set."""
    from tfcli.config import load_config

    def make(*overrides: str):
        base = [f"tokenizer.model={spm_model}", "data.test=null"]
        return load_config(tiny_config, [*base, *overrides])

    return make
