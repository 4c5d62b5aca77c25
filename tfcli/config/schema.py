"""The configuration schema: one frozen dataclass per YAML section, each valid by construction.

Every default lives here. `__post_init__` checks every field's type and range and the rules
between fields (checks.py), so a config built from YAML, from a checkpoint, by
`dataclasses.replace` or from a CLI option is validated the same way; YAML I/O is in files.py.
The `Literal` aliases below are the choices the CLI offers as well.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from tfcli.config.checks import check_fields, opt
from tfcli.errors import ConfigError

Precision = Literal["auto", "fp32", "bf16", "fp16"]
TranslatePrecision = Literal["auto", "fp32", "bf16", "fp16", "int8"]


def check_device(key: str, device: str) -> None:
    """auto, cpu, cuda or cuda:N."""
    if device in ("auto", "cpu", "cuda") or (device.startswith("cuda:") and device[5:].isdigit()):
        return
    raise ConfigError(f"{key}: {device!r} is not one of 'auto', 'cpu', 'cuda', 'cuda:N'")


@dataclass(frozen=True)
class DataConfig:
    """Parallel text: `{prefix}.{lang}` files, plain or gzip-compressed (`.gz`)."""

    SECTION: ClassVar[str] = "data"

    train: str = opt("", "prefix of the training files, e.g. data/de-en/train")
    dev: str | None = opt(None, "prefix of the development files (validation); null: none")
    test: str | None = opt(None, "prefix of the test files, scored after training; null: none")
    src_lang: str = opt("de", "source language suffix")
    tgt_lang: str = opt("en", "target language suffix")
    max_len: int = opt(128, "drop training pairs longer than this many subwords", 1, 100_000)
    max_len_ratio: float = opt(
        0.0, "drop training pairs whose length ratio exceeds this; 0: off", 0
    )
    workers: int = opt(0, "processes encoding the training data; 0: one per CPU core", 0, 1024)
    cache_dir: str | None = opt(
        None, "directory of prepared training data, shared by runs; null: in the run directory"
    )

    def __post_init__(self) -> None:
        check_fields(self, self.SECTION)


@dataclass(frozen=True)
class TokenizerConfig:
    """Sentencepiece subword model, trained on the training data unless given."""

    SECTION: ClassVar[str] = "tokenizer"

    type: Literal["unigram", "bpe"] = opt("unigram", "sentencepiece model type")
    vocab_size: int = opt(8000, "subword vocabulary size (per side when not shared)", 16, 1_000_000)
    shared: bool = opt(True, "one vocabulary for source and target")
    model: str | None = opt(None, "existing shared .model file to use instead of training one")
    src_model: str | None = opt(None, "existing source .model file (shared: false)")
    tgt_model: str | None = opt(None, "existing target .model file (shared: false)")
    character_coverage: float = opt(1.0, "share of characters the model covers", 0.9, 1.0)
    max_sentences: int = opt(
        1_000_000, "sentences sampled to train the model (about 1.7 GB of memory a million)", 100
    )

    def __post_init__(self) -> None:
        check_fields(self, self.SECTION)
        if self.shared and (self.src_model or self.tgt_model):
            raise ConfigError(
                "tokenizer.src_model: only with tokenizer.shared: false; use tokenizer.model"
            )
        if not self.shared and self.model:
            raise ConfigError(
                "tokenizer.model: only with tokenizer.shared: true; use src_model/tgt_model"
            )
        if not self.shared and bool(self.src_model) != bool(self.tgt_model):
            raise ConfigError("tokenizer.src_model: give both src_model and tgt_model, or neither")


@dataclass(frozen=True)
class ModelConfig:
    """The Transformer of "Attention Is All You Need"."""

    SECTION: ClassVar[str] = "model"

    d_model: int = opt(512, "model width", 8)
    heads: int = opt(8, "attention heads; must divide d_model", 1)
    d_ff: int = opt(2048, "feed-forward inner width", 1)
    encoder_layers: int = opt(6, "encoder layers", 1, 64)
    decoder_layers: int = opt(6, "decoder layers", 1, 64)
    dropout: float = opt(0.1, "dropout on embeddings and every sublayer's output", 0.0, 0.9)
    attention_dropout: float = opt(0.0, "dropout on attention weights", 0.0, 0.9)
    norm: Literal["post", "pre"] = opt("post", "layer norm after (paper) or before sublayers")
    activation: Literal["relu", "gelu"] = opt("relu", "feed-forward activation")
    tie_embeddings: Literal["none", "decoder", "all"] = opt(
        "all", "decoder: target embedding = output layer; all: source too (needs shared vocab)"
    )
    max_positions: int = opt(1024, "longest sequence the positional table covers", 16)

    def __post_init__(self) -> None:
        check_fields(self, self.SECTION)
        if self.d_model % self.heads:
            raise ConfigError(
                f"model.heads: {self.heads} does not divide model.d_model ({self.d_model})"
            )
        if self.d_model % 2:
            raise ConfigError(f"model.d_model: {self.d_model} must be even (sinusoidal positions)")


@dataclass(frozen=True)
class TrainConfig:
    """The training loop."""

    SECTION: ClassVar[str] = "train"

    seed: int = opt(1, "random seed for initialisation, shuffling and dropout")
    device: str = opt("auto", "auto (cuda if available, else cpu), cpu, cuda or cuda:N")
    precision: Precision = opt(
        "fp32", "autocast precision; auto: bf16 where the device supports it, else fp32"
    )
    batch_tokens: int = opt(4096, "tokens per batch (padded, the longer side)", 16)
    accumulate: int = opt(1, "batches per optimizer update", 1)
    optimizer: Literal["adam", "adamw"] = opt("adam", "optimizer")
    lr: float = opt(7e-4, "peak learning rate", 0.0)
    warmup_steps: int = opt(4000, "linear warmup updates before inverse-sqrt decay", 0)
    lr_schedule: Literal["inverse_sqrt", "constant"] = opt("inverse_sqrt", "learning rate shape")
    adam_betas: tuple[float, float] = opt((0.9, 0.98), "Adam beta1, beta2")
    adam_eps: float = opt(1e-9, "Adam epsilon", 0.0)
    weight_decay: float = opt(0.0, "weight decay", 0.0)
    label_smoothing: float = opt(0.1, "label smoothing", 0.0, 0.99)
    clip_norm: float = opt(0.0, "clip gradients to this global norm; 0: off", 0.0)
    max_steps: int = opt(100_000, "stop after this many updates", 1)
    max_epochs: int = opt(0, "stop after this many epochs; 0: no limit", 0)
    max_minutes: float = opt(0.0, "stop after this much training time; 0: no limit", 0.0)
    valid_every: int = opt(1000, "validate every this many updates", 1)
    valid_beam: int = opt(1, "beam size for dev BLEU during training; 1: greedy", 1, 64)
    valid_bleu_sentences: int = opt(0, "dev sentences decoded for BLEU; 0: all", 0)
    keep_best: int = opt(3, "keep this many best checkpoints by dev BLEU", 1)
    patience: int = opt(0, "stop after this many validations without a better BLEU; 0: off", 0)
    average_best: bool = opt(False, "at the end, average the kept best checkpoints")
    log_every: int = opt(100, "log training loss every this many updates", 1)
    compile: bool = opt(False, "torch.compile the model")
    threads: int = opt(0, "CPU threads; 0: PyTorch's default", 0)
    init_from: str | None = opt(
        None, "fine-tune: start from this run's (or checkpoint's) weights, tokenizer and model"
    )
    init_optimizer: bool = opt(
        False, "with init_from: continue its optimizer state and schedule too"
    )

    def __post_init__(self) -> None:
        check_fields(self, self.SECTION)
        check_device("train.device", self.device)


@dataclass(frozen=True)
class DecodeConfig:
    """Search settings for validation, test scoring and `tfcli translate`."""

    SECTION: ClassVar[str] = "decode"

    beam: int = opt(4, "beam size; 1: greedy", 1, 256)
    length_penalty: float = opt(0.6, "GNMT length penalty alpha", 0.0)
    max_len_a: float = opt(1.5, "max output length = a * source length + b", 0.0)
    max_len_b: int = opt(10, "max output length = a * source length + b", 1)
    n_best: int = opt(1, "hypotheses returned per sentence (at most beam)", 1)
    batch_tokens: int = opt(4000, "source tokens per translation batch", 16)
    batch_sentences: int = opt(256, "at most this many sentences per translation batch", 1)
    device: str = opt("auto", "auto (cuda if available, else cpu), cpu, cuda or cuda:N")
    precision: TranslatePrecision = opt(
        "fp32",
        "inference precision; int8: CPU only; auto: int8 on the CPU, bf16 (else fp16) on CUDA",
    )

    def __post_init__(self) -> None:
        check_fields(self, self.SECTION)
        if self.n_best > self.beam:
            raise ConfigError(f"decode.n_best: {self.n_best} exceeds decode.beam ({self.beam})")
        check_device("decode.device", self.device)


@dataclass(frozen=True)
class ServeConfig:
    """`tfcli serve`: its command-line options, with their defaults (not a YAML section)."""

    SECTION: ClassVar[str] = "serve"

    host: str = opt("127.0.0.1", "address to listen on; 0.0.0.0: every interface")
    port: int = opt(8000, "TCP port; 0: any free one", 0, 65535)
    max_chars: int = opt(100_000, "most characters of text in one request (more: 413)", 1)
    max_lines: int = opt(1_000, "most texts in one request (more: 413)", 1)
    batch_wait_ms: float = opt(5.0, "how long an idle worker waits for requests to join", 0, 1000)
    batch_requests: int = opt(256, "most requests translated together; 1: one at a time", 1)
    api_key: str | None = opt(None, "key every request must carry; null: none")

    def __post_init__(self) -> None:
        check_fields(self, self.SECTION)
        if self.api_key == "":
            raise ConfigError("serve.api_key: empty; give a key or none")


@dataclass(frozen=True)
class Config:
    """A whole experiment."""

    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)

    def __post_init__(self) -> None:
        sections = {"data": DataConfig, "tokenizer": TokenizerConfig, "model": ModelConfig}
        sections |= {"train": TrainConfig, "decode": DecodeConfig}
        for name, cls in sections.items():
            if not isinstance(getattr(self, name), cls):
                raise ConfigError(f"{name}: expected a {cls.__name__}")
        if self.model.tie_embeddings == "all" and not self.tokenizer.shared:
            raise ConfigError(
                "model.tie_embeddings: 'all' needs a shared vocabulary (tokenizer.shared: true); "
                "use 'decoder' or 'none'"
            )
