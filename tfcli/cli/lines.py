"""Lines in and out of the CLI: sentences from arguments, a file or stdin, read as a stream;
results to stdout or a file.

Input is split on "\\n" only (a "\\r" before it is dropped), so line N of the input is line N
of the output for every reader. A line that is not valid UTF-8 is kept, with its bad bytes
replaced by U+FFFD and a warning naming it, unless `strict` makes it an error: no line is
ever lost to its bytes.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, TextIO

from tfcli.errors import DataError, TfcliError, read_error

log = logging.getLogger(__name__)


class InputLines:
    """The decoded lines of a binary stream, read one at a time.

    `name` names the stream in messages (a path, or "stdin"); `on_read(n)` is told of the n
    bytes each line took (for a progress bar). After iteration `bad_lines` counts the lines
    whose bad bytes were replaced.
    """

    def __init__(
        self,
        stream: Iterable[bytes],
        name: str,
        strict: bool = False,
        on_read: Callable[[int], None] | None = None,
    ) -> None:
        self.stream, self.name, self.strict, self.on_read = stream, name, strict, on_read
        self.bad_lines = 0

    def __iter__(self) -> Iterator[str]:
        for number, raw in enumerate(self._raw_lines(), start=1):
            if self.on_read is not None:
                self.on_read(len(raw))
            yield self._decode(raw.rstrip(b"\n").rstrip(b"\r"), number)
        if self.bad_lines:
            many = self.bad_lines > 1
            log.warning(
                "%s: %d %s not valid UTF-8; %s bad bytes were replaced by U+FFFD",
                self.name,
                self.bad_lines,
                "lines were" if many else "line was",
                "their" if many else "its",
            )

    def _raw_lines(self) -> Iterator[bytes]:
        """The stream's lines; a read error (a broken gzip file, a device error) names it."""
        lines = iter(self.stream)
        while True:
            try:
                raw = next(lines)
            except StopIteration:
                return
            except (OSError, EOFError) as e:
                raise DataError(f"{self.name}: cannot read ({e})") from None
            yield raw

    def _decode(self, raw: bytes, number: int) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            if self.strict:
                raise DataError(f"{self.name}:{number}: not valid UTF-8") from None
            self.bad_lines += 1
            log.warning("%s:%d: not valid UTF-8; bad bytes replaced by U+FFFD", self.name, number)
            return raw.decode("utf-8", errors="replace")


def argument_lines(text: list[str]) -> list[str]:
    """Sentences given as arguments; one with line breaks in it gives one line per line."""
    return [line for arg in text for line in (arg.split("\n") if arg else [""])]


@contextlib.contextmanager
def open_input(path: Path) -> Iterator[tuple[BinaryIO, int]]:
    """`path` opened for binary reading (gzip undone), with its size on disk in bytes."""
    try:
        raw: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed below
        size = path.stat().st_size
    except OSError as e:
        raise DataError(read_error(path, e, "file")) from None
    try:
        gzipped = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        if gzipped:  # the decompressed size is not known ahead
            with gzip.open(raw, "rb") as f:
                yield f, 0  # type: ignore[misc]
        else:
            yield raw, size
    finally:
        raw.close()


def stdin_stream() -> BinaryIO:
    if sys.stdin is None:
        raise DataError("no input: give sentences as arguments, --input FILE, or lines on stdin")
    return sys.stdin.buffer


def stdin_is_terminal() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()


def read_input(text: list[str] | None, input_file: Path | None, strict: bool = False) -> list[str]:
    """All lines to translate at once (for the attention view): the arguments, else --input,
    else stdin."""
    check_one_source(text, input_file)
    if text:
        return argument_lines(text)
    if input_file is not None:
        with open_input(input_file) as (f, _):
            return list(InputLines(f, str(input_file), strict))
    return list(InputLines(stdin_stream(), "stdin", strict))


def check_one_source(text: list[str] | None, input_file: Path | None) -> None:
    if text and input_file is not None:
        raise TfcliError("give sentences as arguments or with --input, not both")


class OutputLines:
    """Rows written chunk by chunk, each chunk flushed as soon as it is done: to stdout, or to
    a file that appears whole at the end (a failed run leaves the file as it was)."""

    def __init__(self, output: Path | None) -> None:
        self.output = output

    def write_chunks(self, chunks: Iterable[list[str]]) -> None:
        if self.output is None:
            _write_chunks(chunks, sys.stdout)
            return
        from tfcli.atomic import write_atomic

        write_atomic(self.output, lambda f: _write_chunks(chunks, _Utf8Writer(f)), "translations")


class _Utf8Writer:
    """The `write`/`flush` of a text stream over a binary file."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f

    def write(self, text: str) -> None:
        self.f.write(text.encode("utf-8"))

    def flush(self) -> None:
        self.f.flush()


def _write_chunks(chunks: Iterable[list[str]], out: TextIO | _Utf8Writer) -> None:
    for rows in chunks:
        out.write("".join(row + "\n" for row in rows))
        out.flush()


def write_output(lines: list[str], output: Path | None) -> None:
    """Each line with a newline, to stdout or to `output`."""
    OutputLines(output).write_chunks([lines])
