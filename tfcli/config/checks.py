"""Checking one config value against its type hint and range; every error names the dotted key.

The dataclasses in schema.py call `check_fields` from `__post_init__`, so a config is valid
however it was made: from YAML, from a checkpoint, by `dataclasses.replace` or by a CLI option.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal

from tfcli.errors import ConfigError


def opt(default: Any, help: str, lo: float | None = None, hi: float | None = None) -> Any:
    """A dataclass field with a help text and an optional inclusive range."""
    return dataclasses.field(default=default, metadata={"help": help, "min": lo, "max": hi})


def describe(tp: Any) -> str:
    """A short human name for a type hint."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else describe(a) for a in typing.get_args(tp))
    if origin is tuple:
        return "a list of " + ", ".join(describe(a) for a in typing.get_args(tp))
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        tp, str(tp)
    )


def coerce(key: str, value: Any, tp: Any) -> Any:
    """Check `value` against type hint `tp`; return it converted (int -> float, list -> tuple)."""
    origin = typing.get_origin(tp)
    bad = ConfigError(f"{key}: expected {describe(tp)}, got {value!r}")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            hint = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
            extra = f"; did you mean {hint[0]!r}?" if hint else ""
            raise ConfigError(f"{key}: {value!r} is not {describe(tp)}{extra}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(key, value, arg)
            except ConfigError:
                pass
        raise bad
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise bad
        return tuple(coerce(f"{key}[{i}]", v, a) for i, (v, a) in enumerate(zip(value, args)))
    if tp is bool or tp is str:
        if not isinstance(value, tp):
            raise bad
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if tp is float:
        return _number(value, bad)
    raise TypeError(f"unsupported config type {tp}")


def _number(value: Any, bad: ConfigError) -> float:
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


def check_range(key: str, value: Any, meta: Mapping[str, Any]) -> None:
    lo, hi = meta.get("min"), meta.get("max")
    if not isinstance(value, int | float) or isinstance(value, bool):
        return
    if lo is not None and value < lo:
        raise ConfigError(f"{key}: {value!r} is too small; expected at least {lo}")
    if hi is not None and value > hi:
        raise ConfigError(f"{key}: {value!r} is too large; expected at most {hi}")


@functools.cache
def type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def check_fields(obj: Any, section: str) -> None:
    """Validate (and normalize, in place) every field of the frozen dataclass `obj`."""
    hints = type_hints(type(obj))
    for f in dataclasses.fields(obj):
        key = f"{section}.{f.name}"
        value = coerce(key, getattr(obj, f.name), hints[f.name])
        check_range(key, value, f.metadata)
        object.__setattr__(obj, f.name, value)  # frozen: the normalized value (1 -> 1.0)


def unknown_key(prefix: str, key: str, known: list[str]) -> ConfigError:
    hint = difflib.get_close_matches(key, known, n=1)
    extra = f"; did you mean {prefix}{hint[0]}?" if hint else f"; known keys: {', '.join(known)}"
    return ConfigError(f"{prefix}{key}: unknown key{extra}")
