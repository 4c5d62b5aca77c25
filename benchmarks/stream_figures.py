"""What streaming translation costs: `tfcli translate` fed lines on stdin as a real process,
its peak RSS, the time from its start to its first output line, and its lines/s.

Two inputs: one sentence repeated N times (the stream itself: reading, chunking, writing; a
line repeated in a chunk is translated once), and the bundled test sentences cycled (real
decoding, 2,000 distinct lines in each chunk of 10,000). The peak RSS at two input lengths
shows whether memory grows with the input.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data" / "de-en"


@dataclass(frozen=True)
class StreamFigures:
    input: str
    lines: int
    output_lines: int
    first_line_s: float  # process start to the first output line
    wall_s: float
    peak_rss_mib: float

    @property
    def lines_per_s(self) -> float:
        return self.lines / self.wall_s


def translate_stdin(run: Path, lines: Iterable[str], name: str, count: int) -> StreamFigures:
    """Pipe `lines` (`count` of them) into `tfcli translate -m run` and measure it."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tfcli", "translate", "-m", str(run)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    feeder = threading.Thread(target=_feed, args=(proc.stdin, lines), daemon=True)
    feeder.start()
    assert proc.stdout is not None
    first = proc.stdout.readline()
    first_s = time.perf_counter() - start
    out = 1 if first else 0
    for block in iter(lambda: proc.stdout.read(1 << 20), b""):  # type: ignore[union-attr]
        out += block.count(b"\n")
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS
    wall = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"tfcli translate failed ({name}, status {status})")
    return StreamFigures(name, count, out, first_s, wall, usage.ru_maxrss / 1024)


def _feed(stdin, lines: Iterable[str]) -> None:
    buffer: list[str] = []
    for line in lines:
        buffer.append(line)
        if len(buffer) == 10_000:
            stdin.write(("\n".join(buffer) + "\n").encode())
            buffer = []
    if buffer:
        stdin.write(("\n".join(buffer) + "\n").encode())
    stdin.close()


def translate_figures(run: Path, repeated_lines: int, test_lines: int) -> list[StreamFigures]:
    """Both inputs, each at a small and at the given length."""
    test = (DATA / "test.de").read_text(encoding="utf-8").splitlines()
    runs = []
    for n in sorted({min(10_000, repeated_lines), repeated_lines}):
        sentence = itertools.repeat("Das ist ein Test.", n)
        runs.append(translate_stdin(run, sentence, "one sentence repeated", n))
    for n in sorted({min(len(test), test_lines), test_lines}):
        runs.append(
            translate_stdin(run, itertools.islice(itertools.cycle(test), n), "test set cycled", n)
        )
    return runs


def stream_rows(figures: list[StreamFigures]) -> list[list[object]]:
    return [
        [
            f.input,
            f"{f.lines:,}",
            "yes" if f.output_lines == f.lines else f"NO ({f.output_lines:,})",
            f"{f.first_line_s:.2f}",
            f"{f.wall_s:.1f}",
            f"{f.lines_per_s:,.0f}",
            f"{f.peak_rss_mib:,.0f}",
        ]
        for f in figures
    ]


STREAM_HEADERS = [
    "input",
    "lines",
    "one out per in",
    "first line s",
    "wall s",
    "lines/s",
    "peak RSS MiB",
]


def main() -> None:
    import argparse

    from common import format_table, machine

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-m", "--model", type=Path, default=Path("runs/quickstart"))
    p.add_argument("--lines", type=int, default=1_000_000, help="repeated-sentence input length")
    p.add_argument("--test-lines", type=int, default=20_000, help="cycled test-set input length")
    args = p.parse_args()
    print(machine())
    figures = translate_figures(args.model, args.lines, args.test_lines)
    print(format_table(STREAM_HEADERS, stream_rows(figures)))


if __name__ == "__main__":
    main()
