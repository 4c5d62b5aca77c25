"""Typed, frozen configuration: one dataclass per YAML section, validated on load.

Every default lives here. A YAML file and `--set section.key=value` overrides go through the
same validation, and every error names the dotted key, the bad value and what was expected.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from tfcli.errors import ConfigError


def _opt(default: Any, help: str, lo: float | None = None, hi: float | None = None) -> Any:
    """A dataclass field with a help text and an optional inclusive range."""
    return field(default=default, metadata={"help": help, "min": lo, "max": hi})


@dataclass(frozen=True)
class DataConfig:
    """Parallel text: `{prefix}.{lang}` files, plain or gzip-compressed (`.gz`)."""

    train: str = _opt("", "prefix of the training files, e.g. data/de-en/train")
    dev: str | None = _opt(None, "prefix of the development files (validation); null: none")
    test: str | None = _opt(None, "prefix of the test files, scored after training; null: none")
    src_lang: str = _opt("de", "source language suffix")
    tgt_lang: str = _opt("en", "target language suffix")
    max_len: int = _opt(128, "drop training pairs longer than this many subwords", 1, 100_000)
    max_len_ratio: float = _opt(
        0.0, "drop training pairs whose length ratio exceeds this; 0: off", 0
    )


@dataclass(frozen=True)
class TokenizerConfig:
    """Sentencepiece subword model, trained on the training data unless given."""

    type: Literal["unigram", "bpe"] = _opt("unigram", "sentencepiece model type")
    vocab_size: int = _opt(
        8000, "subword vocabulary size (per side when not shared)", 16, 1_000_000
    )
    shared: bool = _opt(True, "one vocabulary for source and target")
    model: str | None = _opt(None, "existing shared .model file to use instead of training one")
    src_model: str | None = _opt(None, "existing source .model file (shared: false)")
    tgt_model: str | None = _opt(None, "existing target .model file (shared: false)")
    character_coverage: float = _opt(1.0, "share of characters the model covers", 0.9, 1.0)
    max_sentences: int = _opt(2_000_000, "sentences sampled to train the model", 100)


@dataclass(frozen=True)
class ModelConfig:
    """The Transformer of "Attention Is All You Need"."""

    d_model: int = _opt(512, "model width", 8)
    heads: int = _opt(8, "attention heads; must divide d_model", 1)
    d_ff: int = _opt(2048, "feed-forward inner width", 1)
    encoder_layers: int = _opt(6, "encoder layers", 1, 64)
    decoder_layers: int = _opt(6, "decoder layers", 1, 64)
    dropout: float = _opt(0.1, "dropout on embeddings and every sublayer's output", 0.0, 0.9)
    attention_dropout: float = _opt(0.0, "dropout on attention weights", 0.0, 0.9)
    norm: Literal["post", "pre"] = _opt("post", "layer norm after (paper) or before sublayers")
    activation: Literal["relu", "gelu"] = _opt("relu", "feed-forward activation")
    tie_embeddings: Literal["none", "decoder", "all"] = _opt(
        "all", "decoder: target embedding = output layer; all: source too (needs shared vocab)"
    )
    max_positions: int = _opt(1024, "longest sequence the positional table covers", 16)


@dataclass(frozen=True)
class TrainConfig:
    """The training loop."""

    seed: int = _opt(1, "random seed for initialisation, shuffling and dropout")
    device: str = _opt("auto", "auto (cuda if available, else cpu), cpu, cuda or cuda:N")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = _opt(
        "fp32", "autocast precision; auto: bf16 where the device supports it, else fp32"
    )
    batch_tokens: int = _opt(4096, "tokens per batch (padded, the longer side)", 16)
    accumulate: int = _opt(1, "batches per optimizer update", 1)
    optimizer: Literal["adam", "adamw"] = _opt("adam", "optimizer")
    lr: float = _opt(7e-4, "peak learning rate", 0.0)
    warmup_steps: int = _opt(4000, "linear warmup updates before inverse-sqrt decay", 0)
    lr_schedule: Literal["inverse_sqrt", "constant"] = _opt("inverse_sqrt", "learning rate shape")
    adam_betas: tuple[float, float] = _opt((0.9, 0.98), "Adam beta1, beta2")
    adam_eps: float = _opt(1e-9, "Adam epsilon", 0.0)
    weight_decay: float = _opt(0.0, "weight decay", 0.0)
    label_smoothing: float = _opt(0.1, "label smoothing", 0.0, 0.99)
    clip_norm: float = _opt(0.0, "clip gradients to this global norm; 0: off", 0.0)
    max_steps: int = _opt(100_000, "stop after this many updates", 1)
    max_epochs: int = _opt(0, "stop after this many epochs; 0: no limit", 0)
    max_minutes: float = _opt(0.0, "stop after this much training time; 0: no limit", 0.0)
    valid_every: int = _opt(1000, "validate every this many updates", 1)
    valid_beam: int = _opt(1, "beam size for dev BLEU during training; 1: greedy", 1, 64)
    valid_bleu_sentences: int = _opt(0, "dev sentences decoded for BLEU; 0: all", 0)
    keep_best: int = _opt(3, "keep this many best checkpoints by dev BLEU", 1)
    patience: int = _opt(0, "stop after this many validations without a better BLEU; 0: off", 0)
    average_best: bool = _opt(False, "at the end, average the kept best checkpoints")
    log_every: int = _opt(100, "log training loss every this many updates", 1)
    compile: bool = _opt(False, "torch.compile the model")
    threads: int = _opt(0, "CPU threads; 0: PyTorch's default", 0)


@dataclass(frozen=True)
class DecodeConfig:
    """Search settings for validation, test scoring and `tfcli translate`."""

    beam: int = _opt(4, "beam size; 1: greedy", 1, 256)
    length_penalty: float = _opt(0.6, "GNMT length penalty alpha", 0.0)
    max_len_a: float = _opt(1.5, "max output length = a * source length + b", 0.0)
    max_len_b: int = _opt(10, "max output length = a * source length + b", 1)
    n_best: int = _opt(1, "hypotheses returned per sentence (at most beam)", 1)
    batch_tokens: int = _opt(4000, "source tokens per translation batch", 16)


@dataclass(frozen=True)
class Config:
    """A whole experiment."""

    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)


# --- validation ---------------------------------------------------------------------------


def _describe(tp: Any) -> str:
    """A short human name for a type hint."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _describe(a) for a in typing.get_args(tp))
    if origin is tuple:
        return "a list of " + ", ".join(_describe(a) for a in typing.get_args(tp))
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        tp, str(tp)
    )


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Check `value` against type hint `tp`; return it converted (int -> float, list -> tuple)."""
    origin = typing.get_origin(tp)
    bad = ConfigError(f"{key}: expected {_describe(tp)}, got {value!r}")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            hint = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
            extra = f"; did you mean {hint[0]!r}?" if hint else ""
            raise ConfigError(f"{key}: {value!r} is not {_describe(tp)}{extra}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(key, value, arg)
            except ConfigError:
                pass
        raise bad
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise bad
        return tuple(_coerce(f"{key}[{i}]", v, a) for i, (v, a) in enumerate(zip(value, args)))
    if tp is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                number = float(value)
            except ValueError:
                raise bad from None
        elif isinstance(value, bool) or not isinstance(value, int | float):
            raise bad
        else:
            number = float(value)
        if math.isnan(number):  # NaN passes every range check
            raise bad
        return number
    if tp is str:
        if not isinstance(value, str):
            raise bad
        return value
    raise TypeError(f"unsupported config type {tp}")


def _check_range(key: str, value: Any, meta: typing.Mapping[str, Any]) -> None:
    lo, hi = meta.get("min"), meta.get("max")
    if not isinstance(value, int | float) or isinstance(value, bool):
        return
    if lo is not None and value < lo:
        raise ConfigError(f"{key}: {value!r} is too small; expected at least {lo}")
    if hi is not None and value > hi:
        raise ConfigError(f"{key}: {value!r} is too large; expected at most {hi}")


def _unknown_key(prefix: str, key: str, known: list[str]) -> ConfigError:
    hint = difflib.get_close_matches(key, known, n=1)
    extra = f"; did you mean {prefix}{hint[0]}?" if hint else f"; known keys: {', '.join(known)}"
    return ConfigError(f"{prefix}{key}: unknown key{extra}")


def _build(cls: type, raw: Any, prefix: str) -> Any:
    """Build dataclass `cls` from a mapping, validating every key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        name = prefix.rstrip(".") or "config"
        raise ConfigError(f"{name}: expected a mapping of keys to values, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            raise _unknown_key(prefix, str(key), list(fields))
    values = {}
    for name, f in fields.items():
        if name not in raw:
            continue
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            values[name] = _build(tp, raw[name], f"{prefix}{name}.")
        else:
            values[name] = _coerce(prefix + name, raw[name], tp)
            _check_range(prefix + name, values[name], f.metadata)
    return cls(**values)


def _check_consistency(cfg: Config) -> None:
    """Rules that involve more than one key."""
    m, tok = cfg.model, cfg.tokenizer
    if m.d_model % m.heads:
        raise ConfigError(f"model.heads: {m.heads} does not divide model.d_model ({m.d_model})")
    if m.d_model % 2:
        raise ConfigError(f"model.d_model: {m.d_model} must be even (sinusoidal positions)")
    if m.tie_embeddings == "all" and not tok.shared:
        raise ConfigError(
            "model.tie_embeddings: 'all' needs a shared vocabulary (tokenizer.shared: true); "
            "use 'decoder' or 'none'"
        )
    if tok.shared and (tok.src_model or tok.tgt_model):
        raise ConfigError(
            "tokenizer.src_model: only with tokenizer.shared: false; use tokenizer.model"
        )
    if not tok.shared and tok.model:
        raise ConfigError(
            "tokenizer.model: only with tokenizer.shared: true; use src_model/tgt_model"
        )
    if not tok.shared and bool(tok.src_model) != bool(tok.tgt_model):
        raise ConfigError("tokenizer.src_model: give both src_model and tgt_model, or neither")
    if cfg.decode.n_best > cfg.decode.beam:
        raise ConfigError(
            f"decode.n_best: {cfg.decode.n_best} exceeds decode.beam ({cfg.decode.beam})"
        )
    dev = cfg.train.device
    if dev not in ("auto", "cpu", "cuda") and not (dev.startswith("cuda:") and dev[5:].isdigit()):
        raise ConfigError(f"train.device: {dev!r} is not one of 'auto', 'cpu', 'cuda', 'cuda:N'")


def config_from_dict(raw: Any) -> Config:
    """Validate a plain mapping (from YAML or a checkpoint) into a `Config`."""
    cfg = _build(Config, raw, "")
    _check_consistency(cfg)
    return cfg


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """Plain data (lists, not tuples) for YAML files and checkpoints."""

    def plain(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [plain(x) for x in v]
        return v

    return plain(dataclasses.asdict(cfg))


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Apply one `section.key=value` override to a raw config mapping in place.

    The value is read as YAML, so `--set train.lr=1e-3`, `--set data.dev=null` and
    `--set train.adam_betas=[0.9,0.98]` all work.
    """
    if "=" not in override:
        raise ConfigError(f"--set {override}: expected section.key=value")
    dotted, text = override.split("=", 1)
    parts = dotted.strip().split(".")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"--set {override}: expected section.key=value, e.g. train.lr=0.001")
    section, key = parts
    sections = [f.name for f in dataclasses.fields(Config)]
    if section not in sections:
        raise _unknown_key("", section, sections)
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    if raw.get(section) is None:
        raw[section] = {}
    if not isinstance(raw[section], dict):
        raise ConfigError(f"{section}: expected a mapping of keys to values")
    raw[section][key] = value


def read_yaml(path: Path) -> Any:
    """Read a YAML file with `yaml.safe_load`; errors name the file, line and column."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read config file ({e})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path}{where}: invalid YAML: {problem}") from None


def load_config(path: Path | None, overrides: typing.Sequence[str] = ()) -> Config:
    """Load a YAML config file (or defaults when `path` is None) and apply overrides."""
    raw = read_yaml(path) if path is not None else {}
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (data, model, ...) at the top")
    for override in overrides:
        apply_override(raw, override)
    try:
        return config_from_dict(raw)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}" if path is not None else str(e)) from None


def save_config(cfg: Config, path: Path) -> None:
    """Write the resolved config as YAML."""
    text = yaml.safe_dump(config_to_dict(cfg), sort_keys=False, allow_unicode=True)
    Path(path).write_text(text, encoding="utf-8")


def reference(cls: type = Config, prefix: str = "") -> typing.Iterator[tuple[str, str, Any, str]]:
    """Yield (dotted key, type, default, help) for every key: the config reference."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            yield from reference(tp, f"{prefix}{f.name}.")
        else:
            yield prefix + f.name, _describe(tp), f.default, f.metadata.get("help", "")
