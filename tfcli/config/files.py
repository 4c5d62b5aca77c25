"""Configs as plain data: YAML files, `--set section.key=value` overrides, checkpoint dicts.

A mapping becomes a `Config` through `config_from_dict`, which refuses unknown keys (with a
suggestion) and leaves every other check to the dataclasses themselves (schema.py).
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

import yaml

from tfcli.atomic import write_text_atomic
from tfcli.config.checks import type_hints, unknown_key
from tfcli.config.schema import Config
from tfcli.errors import ConfigError


def _build(cls: type, raw: Any, prefix: str) -> Any:
    """Build dataclass `cls` from a mapping; unknown keys are errors naming the dotted key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        name = prefix.rstrip(".") or "config"
        raise ConfigError(f"{name}: expected a mapping of keys to values, got {raw!r}")
    hints = type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in raw:
        if key not in names:
            raise unknown_key(prefix, str(key), names)
    values = {}
    for name in names:
        if name in raw:
            tp = hints[name]
            nested = dataclasses.is_dataclass(tp)
            values[name] = _build(tp, raw[name], f"{prefix}{name}.") if nested else raw[name]
    return cls(**values)


def config_from_dict(raw: Any) -> Config:
    """Validate a plain mapping (from YAML or a checkpoint) into a `Config`."""
    return _build(Config, raw, "")


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
        raise unknown_key("", section, sections)
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
    """Write the resolved config as YAML, atomically."""
    text = yaml.safe_dump(config_to_dict(cfg), sort_keys=False, allow_unicode=True)
    write_text_atomic(path, text, "config file")
