"""Lines in and out of the CLI: sentences from arguments, a file or stdin; results to stdout
or a file."""

from __future__ import annotations

import sys
from pathlib import Path

from tfcli.errors import DataError, TfcliError


def read_input(text: list[str] | None, input_file: Path | None) -> list[str]:
    """Lines to translate: the arguments, else --input, else stdin."""
    from tfcli.data.text import read_lines, split_lines

    if text:
        if input_file is not None:
            raise TfcliError("give sentences as arguments or with --input, not both")
        return [line for arg in text for line in (arg.split("\n") if arg else [""])]
    if input_file is not None:
        return read_lines(input_file)
    if sys.stdin is None:
        raise DataError("no input: give sentences as arguments, --input FILE, or lines on stdin")
    return split_lines(sys.stdin.buffer.read(), "stdin")


def write_output(lines: list[str], output: Path | None) -> None:
    """Each line with a newline, to stdout or to `output`."""
    text = "".join(line + "\n" for line in lines)
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as e:
        raise DataError(f"{output}: cannot write ({e.strerror})") from None
