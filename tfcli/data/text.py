"""Reading UTF-8 text files, plain or gzip: lines without their endings, errors naming the file
and line."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import BinaryIO

from tfcli.errors import DataError, read_error


def resolve_path(prefix: str, lang: str) -> Path:
    """`{prefix}.{lang}`, or `{prefix}.{lang}.gz` when only that exists."""
    plain = Path(f"{prefix}.{lang}")
    gz = Path(f"{prefix}.{lang}.gz")
    if plain.exists() or not gz.exists():
        return plain
    return gz


def read_lines(path: str | Path) -> list[str]:
    """All lines of a UTF-8 text file, plain or gzip, without line endings."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(read_error(path, e, "file")) from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path}: broken gzip file ({e})") from None
    return split_lines(raw, str(path))


def split_lines(raw: bytes, name: str) -> list[str]:
    """Decode UTF-8 text into lines; an encoding error names `name` and the line."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"{name}:{line}: not valid UTF-8") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [s.rstrip("\r") for s in lines]


def read_parallel(src_path: str | Path, tgt_path: str | Path) -> tuple[list[str], list[str]]:
    """Read two line-aligned files; a different number of lines is an error naming both."""
    src, tgt = read_lines(src_path), read_lines(tgt_path)
    if len(src) != len(tgt):
        raise DataError(line_count_error(src_path, len(src), tgt_path, len(tgt)))
    return src, tgt


def open_binary(path: str | Path) -> BinaryIO:
    """`path` opened for reading bytes, through gzip when it starts with gzip's magic number."""
    path = Path(path)
    try:
        f = open(path, "rb")  # noqa: SIM115 - the caller closes it
        magic = f.read(2)
        f.seek(0)
    except OSError as e:
        raise DataError(read_error(path, e, "file")) from None
    if magic == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=f, mode="rb")  # type: ignore[return-value]
    return f


def line_count_error(src_path: str | Path, n_src: int, tgt_path: str | Path, n_tgt: int) -> str:
    """The one-line error for parallel files of different lengths, naming both."""
    return (
        f"{src_path} has {n_src} lines but {tgt_path} has {n_tgt}: "
        "parallel files must have one line per sentence pair"
    )
