"""Translating an input of any length in bounded memory.

Lines are taken in chunks (at most `chunk_lines` lines and about `chunk_chars` characters);
each chunk is translated in length-sorted batches and its rows are handed on in input order
as soon as it is done, so output starts after the first chunk and memory holds one chunk, not
the input. A line that comes more than once in a chunk is translated once: decoding is
deterministic, and inputs such as logs and subtitles repeat lines a lot.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported only when a model is loaded (`--help` stays fast)
    from tfcli.translation.translator import TextHypothesis, Translator

CHUNK_LINES = 10_000
CHUNK_CHARS = 4_000_000  # ~4 MB of text: a chunk of very long lines stays small too


def chunks(
    lines: Iterable[str], chunk_lines: int = CHUNK_LINES, chunk_chars: int = CHUNK_CHARS
) -> Iterator[list[str]]:
    """`lines` cut into consecutive lists of at most `chunk_lines` lines, a list ending early
    once it holds `chunk_chars` characters (a single longer line is a chunk of its own)."""
    chunk: list[str] = []
    chars = 0
    for line in lines:
        chunk.append(line)
        chars += len(line)
        if len(chunk) >= chunk_lines or chars >= chunk_chars:
            yield chunk
            chunk, chars = [], 0
    if chunk:
        yield chunk


def translate_chunks(
    translator: Translator,
    lines: Iterable[str],
    chunk_lines: int = CHUNK_LINES,
    chunk_chars: int = CHUNK_CHARS,
) -> Iterator[list[str]]:
    """The output rows of each chunk of `lines`, chunk by chunk, in input order.

    With n_best 1 a row is the translation; with more, each line gives n rows
    `line-number<TAB>translation<TAB>score` (empty ones for an empty line), numbered through
    the whole input.
    """
    n = translator.settings.n_best
    first = 1  # the input line number of the chunk's first line
    for chunk in chunks(lines, chunk_lines, chunk_chars):
        nbest = _translate_unique(translator, chunk, first)
        if n == 1:
            yield [hyps[0].text if hyps else "" for hyps in nbest]
        else:
            yield [row for k, hyps in enumerate(nbest) for row in _nbest_rows(first + k, hyps, n)]
        first += len(chunk)


def _translate_unique(
    translator: Translator, chunk: list[str], first: int
) -> list[list[TextHypothesis]]:
    """The n-best lists of `chunk`, each distinct line translated once."""
    where: dict[str, int] = {}  # line -> its position among the distinct lines
    numbers: list[int] = []  # each distinct line's first input line number
    for k, line in enumerate(chunk):
        if line not in where:
            where[line] = len(numbers)
            numbers.append(first + k)
    results = translator.translate_nbest(list(where), numbers)
    return [results[where[line]] for line in chunk]


def _nbest_rows(number: int, hyps: list[TextHypothesis], n: int) -> list[str]:
    if not hyps:
        return [f"{number}\t\t0.0000"] * n
    return [f"{number}\t{h.text}\t{h.score:.4f}" for h in hyps]
