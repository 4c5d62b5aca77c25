"""A uniform sample of at most k lines of each side of a parallel corpus of any length
(reservoir sampling), for training sentencepiece without reading the corpus into memory.

The files are read together, so files of different lengths are refused (naming both) before
any tokenizer is trained on them.
"""

from __future__ import annotations

import random
from pathlib import Path

from tfcli.data.line_chunks import parallel_chunks
from tfcli.errors import DataError


class Reservoir:
    """At most `k` of the non-blank lines added, each equally likely (Algorithm R).

    A stream of at most k non-blank lines is kept whole and in order, so a small corpus
    trains the same tokenizer as when it was read into memory. Memory: k lines.
    """

    def __init__(self, k: int, rng: random.Random) -> None:
        self.k, self.rng = k, rng
        self.lines: list[str] = []
        self.seen = 0

    def add(self, line: str) -> None:
        if not line.strip():
            return
        if self.seen < self.k:
            self.lines.append(line)
        else:
            j = self.rng.randrange(self.seen + 1)
            if j < self.k:
                self.lines[j] = line
        self.seen += 1


def _decode(raw: list[bytes], path: Path, first: int) -> list[str]:
    try:
        return [b.decode("utf-8") for b in raw]
    except UnicodeDecodeError:
        for i, b in enumerate(raw):
            try:
                b.decode("utf-8")
            except UnicodeDecodeError:
                raise DataError(f"{path}:{first + i + 1}: not valid UTF-8") from None
    raise AssertionError("unreachable")


def sample_sides(src_path: Path, tgt_path: Path, k: int, seed: int = 1) -> tuple[Reservoir, ...]:
    """A reservoir of at most k lines of each file, filled in one pass over both."""
    rng = random.Random(seed)
    sides = Reservoir(k, rng), Reservoir(k, rng)
    for chunk in parallel_chunks(src_path, tgt_path):
        for side, raw, path in ((0, chunk.src, src_path), (1, chunk.tgt, tgt_path)):
            for line in _decode(raw, path, chunk.first):
                sides[side].add(line)
    return sides


def shared_sample(a: Reservoir, b: Reservoir, k: int, seed: int = 1) -> list[str]:
    """At most k lines drawn uniformly from both sides together: all of them, source lines
    first, when there are no more than k; else as many from each side as a uniform draw
    from their union would take (hypergeometric)."""
    if a.seen + b.seen <= k:
        return [*a.lines, *b.lines]
    rng = random.Random(seed)
    left, from_a = a.seen, 0
    total = a.seen + b.seen
    for _ in range(k):  # sequential draws without replacement from the union
        if rng.random() * total < left:
            from_a += 1
            left -= 1
        total -= 1
    return rng.sample(a.lines, from_a) + rng.sample(b.lines, k - from_a)
