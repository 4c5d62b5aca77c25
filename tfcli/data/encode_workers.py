"""Encoding a corpus in parallel worker processes: chunks of raw lines in, numpy arrays out,
the results taken in input order, with only a few chunks in flight at a time.

Each worker loads the sentencepiece models from their bytes once (the pool's initializer) and
applies the length filters itself, so the main process only writes what comes back. A corpus
of one chunk is encoded in this process: starting workers would cost more than they save.
Workers are spawned, not forked: the parent may hold threads (torch's) that a fork would
copy mid-lock.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from tfcli.data.line_chunks import LineChunk


@dataclass(frozen=True)
class Filters:
    """The length filters of `data.max_len` and `data.max_len_ratio` (see pairs.py)."""

    max_len: int
    max_ratio: float


@dataclass(frozen=True)
class EncodedChunk:
    """The kept pairs of one chunk, with what the filters dropped.

    lines: (N,) int64 line numbers in the files; src_lens, tgt_lens: (N,) int32 lengths
    without EOS/BOS; src_ids, tgt_ids: the ids of the kept pairs end to end.
    """

    lines: np.ndarray
    src_lens: np.ndarray
    tgt_lens: np.ndarray
    src_ids: np.ndarray
    tgt_ids: np.ndarray
    empty: int
    too_long: int
    bad_ratio: int
    done: float
    bad_utf8: tuple[int, int] | None = None  # (side 0/1, 1-based line) of invalid UTF-8


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 under 65,536 subwords, else uint32: half the disk and page cache for most models."""
    return np.dtype(np.uint16 if vocab_size < 65_536 else np.uint32)


def default_workers(workers: int) -> int:
    """`data.workers`, with 0 meaning one per CPU core this process may use."""
    if workers > 0:
        return workers
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


_worker: dict[str, Any] = {}


def _init(
    src_model: bytes, tgt_model: bytes, filters: Filters, dtype: str, threads: int | None
) -> None:
    """A worker's sentencepiece models, loaded from bytes (no file needs to exist)."""
    import sentencepiece as spm

    sps = []
    for model in (src_model, tgt_model):
        sp = spm.SentencePieceProcessor()
        sp.LoadFromSerializedProto(model)
        sps.append(sp)
    _worker.update(sps=sps, filters=filters, dtype=np.dtype(dtype), threads=threads)


def _decode(lines: list[bytes], first: int) -> tuple[list[str] | None, int]:
    try:
        return [b.decode("utf-8") for b in lines], 0
    except UnicodeDecodeError:
        for i, b in enumerate(lines):
            try:
                b.decode("utf-8")
            except UnicodeDecodeError:
                return None, first + i + 1
    raise AssertionError("unreachable")


def _keep_mask(ls: np.ndarray, lt: np.ndarray, f: Filters) -> tuple[np.ndarray, int, int, int]:
    """make_examples's rule: empty, then too long (EOS counted), then the length ratio."""
    empty = (ls == 0) | (lt == 0)
    too_long = ~empty & ((ls + 1 > f.max_len) | (lt + 1 > f.max_len))
    bad = np.zeros_like(empty)
    if f.max_ratio > 0:
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.maximum(ls, lt) / np.minimum(ls, lt)
        bad = ~empty & ~too_long & (ratio > f.max_ratio)
    keep = ~(empty | too_long | bad)
    return keep, int(empty.sum()), int(too_long.sum()), int(bad.sum())


def encode_chunk(chunk: LineChunk) -> EncodedChunk:
    """Encode and filter one chunk with the models `_init` loaded."""
    sps, f, dtype = _worker["sps"], _worker["filters"], _worker["dtype"]
    ids = []
    for side, lines in enumerate((chunk.src, chunk.tgt)):
        text, bad_line = _decode(lines, chunk.first)
        if text is None:
            none = np.zeros(0, np.int64)
            return EncodedChunk(none, none, none, none, none, 0, 0, 0, 0.0, (side, bad_line))
        ids.append(sps[side].encode(text, out_type=int, num_threads=_worker["threads"]))
    ls = np.fromiter(map(len, ids[0]), np.int32, len(ids[0]))
    lt = np.fromiter(map(len, ids[1]), np.int32, len(ids[1]))
    keep, empty, too_long, bad_ratio = _keep_mask(ls, lt, f)
    kept = np.flatnonzero(keep)

    def flat(seqs: list[list[int]], lens: np.ndarray) -> np.ndarray:
        picked = (seqs[i] for i in kept.tolist())
        return np.fromiter(itertools.chain.from_iterable(picked), dtype, int(lens.sum()))

    ls, lt = ls[kept], lt[kept]
    lines = kept.astype(np.int64) + chunk.first
    src, tgt = flat(ids[0], ls), flat(ids[1], lt)
    return EncodedChunk(lines, ls, lt, src, tgt, empty, too_long, bad_ratio, chunk.done)


def encode_in_order(
    chunks: Iterable[LineChunk],
    models: tuple[bytes, bytes],
    filters: Filters,
    dtype: np.dtype,
    workers: int,
) -> Iterator[EncodedChunk]:
    """The encoded chunks in input order, from `workers` processes (at most 2 chunks each in
    flight, so memory stays a few chunks whatever the corpus)."""
    it = iter(chunks)
    head = list(itertools.islice(it, 2))
    if workers <= 1 or len(head) < 2:
        _init(*models, filters, dtype.str, None)
        for chunk in itertools.chain(head, it):
            yield encode_chunk(chunk)
        return
    context = multiprocessing.get_context("spawn")
    initargs = (*models, filters, dtype.str, 1)
    with context.Pool(workers, initializer=_init, initargs=initargs) as pool:
        pending: deque = deque()
        for chunk in itertools.chain(head, it):
            pending.append(pool.apply_async(encode_chunk, (chunk,)))
            if len(pending) >= 2 * workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()
