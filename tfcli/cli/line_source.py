"""Where `tfcli translate` takes its lines from, and how it shows its way through them.

- arguments: the sentences given, in one chunk;
- `--input FILE`: streamed in chunks, with a progress bar (lines, lines/s, ETA) when stderr is
  a terminal;
- stdin from a pipe or file: streamed in chunks;
- stdin typed at a terminal: a prompt on stderr, each line translated as soon as it is entered
  (chunks of one line), Ctrl-D ends.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from tfcli.cli.lines import (
    InputLines,
    argument_lines,
    check_one_source,
    open_input,
    stdin_is_terminal,
    stdin_stream,
)
from tfcli.translation.streaming import CHUNK_LINES

PROMPT = "> "


class LineSource:
    """The lines of one `tfcli translate` call: arguments, --input FILE or stdin."""

    def __init__(self, text: list[str] | None, input_file: Path | None, strict: bool) -> None:
        self.text, self.input_file, self.strict = text, input_file, strict

    def check(self) -> None:
        """Refuse a call that gives its lines twice (before the model is loaded)."""
        check_one_source(self.text, self.input_file)

    @contextlib.contextmanager
    def lines(self) -> Iterator[tuple[Iterable[str], int, Progress]]:
        """(the lines, lines per chunk, a progress display) for this source."""
        if self.text:
            yield argument_lines(self.text), CHUNK_LINES, Progress()
        elif self.input_file is not None:
            with open_input(self.input_file) as (f, size):
                bar = Progress.bar(size) if sys.stderr.isatty() else Progress()
                with bar:
                    lines = InputLines(f, str(self.input_file), self.strict, bar.read)
                    yield lines, CHUNK_LINES, bar
        elif stdin_is_terminal():
            sys.stderr.write("tfcli translate: type a sentence and press Enter; Ctrl-D ends\n")
            yield InputLines(prompted(sys.stdin.buffer), "stdin", self.strict), 1, Progress()
        else:
            yield InputLines(stdin_stream(), "stdin", self.strict), CHUNK_LINES, Progress()


def prompted(stream: BinaryIO) -> Iterator[bytes]:
    """The lines of a terminal, a prompt on stderr before each (the caller answers a line
    before it asks for the next)."""
    while True:
        sys.stderr.write(PROMPT)
        sys.stderr.flush()
        raw = stream.readline()
        if not raw:
            sys.stderr.write("\n")
            return
        yield raw


class Progress:
    """Lines done, for a progress bar; this base class shows nothing."""

    def read(self, n: int) -> None:
        """`n` more bytes of input were read."""

    def count(self, chunks: Iterable[list[str]], n_best: int) -> Iterator[list[str]]:
        """`chunks` passed on, each counted once written (n_best rows per input line)."""
        for rows in chunks:
            yield rows
            self.done(len(rows) // n_best)

    def done(self, lines: int) -> None:
        """`lines` more lines were translated and written."""

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    @staticmethod
    def bar(total_bytes: int) -> Progress:
        return _Bar(total_bytes)


class _Bar(Progress):
    """A rich bar on stderr over the input's bytes (its ETA), with lines and lines/s."""

    def __init__(self, total_bytes: int) -> None:
        from rich.console import Console

        from tfcli.cli.progress import progress_bar

        # translations go to stdout as they are, not into the bar
        self.progress = progress_bar(
            "translate", Console(stderr=True), redirect_stdout=False, redirect_stderr=False
        )
        self.task = self.progress.add_task("translate", total=total_bytes or None, info="")
        self.bytes_read = self.lines = 0
        self.start = time.perf_counter()

    def read(self, n: int) -> None:
        self.bytes_read += n

    def done(self, lines: int) -> None:
        self.lines += lines
        rate = self.lines / max(time.perf_counter() - self.start, 1e-9)
        info = f"{self.lines:,} lines | {rate:,.0f} lines/s"
        self.progress.update(self.task, completed=self.bytes_read, info=info)

    def __enter__(self) -> Progress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()
