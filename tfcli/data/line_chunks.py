"""Two line-aligned files read together in chunks of raw lines: what the encoding workers are
fed. Memory holds one chunk (of each file) at a time, whatever the size of the corpus."""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from tfcli.data.text import line_count_error, open_binary
from tfcli.errors import DataError

CHUNK_LINES = 20_000  # pairs per chunk: big enough to amortize a worker round trip


@dataclass(frozen=True)
class LineChunk:
    """`first` is the 0-based number of the chunk's first line in the files."""

    first: int
    src: list[bytes]
    tgt: list[bytes]
    done: float  # the share of the source file read so far, for progress and ETA


def _position(f: BinaryIO) -> int:
    """Bytes of the file on disk read so far (compressed bytes for gzip)."""
    inner = getattr(f, "fileobj", None)
    return (inner or f).tell()


def _take(f: BinaryIO, n: int, path: Path) -> list[bytes]:
    try:
        lines = [line for _, line in zip(range(n), f)]
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: broken gzip file ({e})") from None
    return [line.rstrip(b"\n").rstrip(b"\r") for line in lines]


def _count_rest(f: BinaryIO, path: Path) -> int:
    try:
        return sum(1 for _ in f)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: broken gzip file ({e})") from None


def parallel_chunks(
    src_path: Path, tgt_path: Path, chunk_lines: int | None = None
) -> Iterator[LineChunk]:
    """The pairs of lines of two files, `chunk_lines` at a time, as bytes without line endings.

    Files of different lengths are an error naming both files and both line counts (the
    longer one is counted to the end to say so).
    """
    chunk_lines = chunk_lines or CHUNK_LINES
    size = max(os.path.getsize(src_path), 1) if src_path.exists() else 1
    with open_binary(src_path) as fs, open_binary(tgt_path) as ft:
        first = 0
        while True:
            src, tgt = _take(fs, chunk_lines, src_path), _take(ft, chunk_lines, tgt_path)
            if len(src) != len(tgt):
                n_src = first + len(src) + (_count_rest(fs, src_path) if len(src) > len(tgt) else 0)
                n_tgt = first + len(tgt) + (_count_rest(ft, tgt_path) if len(tgt) > len(src) else 0)
                raise DataError(line_count_error(src_path, n_src, tgt_path, n_tgt))
            if not src:
                return
            yield LineChunk(first, src, tgt, min(_position(fs) / size, 1.0))
            first += len(src)
