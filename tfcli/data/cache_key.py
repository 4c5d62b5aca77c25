"""The key of a prepared corpus: what its contents depend on, so a cache is never stale.

A source file counts by its path, size and modification time, and by a hash of a sample of
its bytes (the start, the end and blocks between): a file rewritten within the same second
with the same size is still seen as changed unless the sample matches too, without hashing
gigabytes at every start. The tokenizers count by their model bytes, the filters by value.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tfcli.errors import DataError, read_error

SAMPLE_BLOCK = 1 << 16  # bytes per sampled block
SAMPLE_BLOCKS = 16  # blocks spread over the file, the first and the last included


def sample_hash(path: Path) -> str:
    """sha256 of SAMPLE_BLOCKS blocks spread evenly over the file."""
    h = hashlib.sha256()
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            if size <= SAMPLE_BLOCK * SAMPLE_BLOCKS:
                h.update(f.read())
                return h.hexdigest()
            step = (size - SAMPLE_BLOCK) / (SAMPLE_BLOCKS - 1)
            for i in range(SAMPLE_BLOCKS):
                f.seek(round(i * step))
                h.update(f.read(SAMPLE_BLOCK))
    except OSError as e:
        raise DataError(read_error(path, e, "file")) from None
    return h.hexdigest()


def file_identity(path: Path) -> dict[str, object]:
    """What a source file contributes to the key."""
    try:
        st = path.stat()
    except OSError as e:
        raise DataError(read_error(path, e, "file")) from None
    resolved = str(path.resolve())
    return {
        "path": resolved,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "sample": sample_hash(path),
    }


def corpus_key(
    sources: tuple[Path, Path], models: tuple[bytes, bytes], max_len: int, max_ratio: float
) -> str:
    """The hex key of the corpus prepared from `sources` with these tokenizers and filters."""
    parts = {
        "sources": [file_identity(p) for p in sources],
        "tokenizers": [hashlib.sha256(m).hexdigest() for m in models],
        "max_len": max_len,
        "max_len_ratio": max_ratio,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()
