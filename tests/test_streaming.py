"""Streaming translation: chunks keep input order, output starts before the input ends, bad
bytes and odd lines never cost a line, a translation never holds a line break, and a line
typed at a terminal is answered before the next is read."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tfcli.cli.lines import InputLines
from tfcli.errors import DataError
from tfcli.translation.streaming import chunks, translate_chunks
from tfcli.translation.translator import TextHypothesis, load_translator, one_line

# Every character some reader splits lines at (str.splitlines and Unicode's line breaks).
LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


@pytest.fixture(scope="module")
def translator(memorized_run):
    return load_translator(memorized_run, device="cpu")


def test_chunks_cut_by_lines_and_by_characters():
    lines = [str(i) for i in range(10)]
    assert list(chunks(lines, chunk_lines=3)) == [lines[0:3], lines[3:6], lines[6:9], lines[9:]]
    long = ["a" * 50, "b", "c" * 60, "d", "e" * 56, "f"]  # a chunk ends once it holds 55
    assert list(chunks(long, chunk_lines=100, chunk_chars=55)) == [long[:3], long[3:5], long[5:]]


def test_chunked_translation_keeps_order_across_chunk_boundaries(translator, overfit):
    src, want = overfit.sources, overfit.translations
    picks = [2, 0, 3, 3, 1, 0, 2, 1, 1, 3, 0]
    lines = [src[k] for k in picks[:5]] + ["", "  "] + [src[k] for k in picks[5:]]
    expected = [want[k] for k in picks[:5]] + ["", ""] + [want[k] for k in picks[5:]]
    out = list(translate_chunks(translator, lines, chunk_lines=3))
    assert [len(rows) for rows in out] == [3, 3, 3, 3, 1]
    assert [row for rows in out for row in rows] == expected


def test_a_chunk_is_written_before_the_next_one_is_read(translator, overfit):
    read = []

    def lines():
        for k in range(9):
            read.append(k)
            yield overfit.sources[k % 4]

    stream = translate_chunks(translator, lines(), chunk_lines=3)
    assert next(stream) == [overfit.translations[k % 4] for k in range(3)]
    assert read == [0, 1, 2]  # nothing beyond the first chunk was taken yet


def test_n_best_rows_are_numbered_through_the_whole_input(memorized_run, overfit):
    nbest = load_translator(memorized_run, device="cpu", n_best=2)
    lines = [overfit.sources[0], "", overfit.sources[1], overfit.sources[0]]
    rows = [r for rows in translate_chunks(nbest, lines, chunk_lines=3) for r in rows]
    assert [r.split("\t")[0] for r in rows] == ["1", "1", "2", "2", "3", "3", "4", "4"]
    assert rows[2:4] == ["2\t\t0.0000"] * 2
    assert rows[0] == rows[6].replace("4\t", "1\t", 1)  # a repeated line: the same rows
    assert rows[0].split("\t")[1] == overfit.translations[0]


def test_bad_bytes_are_replaced_with_a_warning_naming_the_line(caplog):
    raw = [b"gut\n", b"schl\xe4ger\n", b"ok\r\n", b"\xff\xfe\n", b"letzte"]
    lines = InputLines(raw, "stdin")
    assert list(lines) == ["gut", "schl\ufffdger", "ok", "\ufffd\ufffd", "letzte"]
    assert lines.bad_lines == 2
    messages = [r.getMessage() for r in caplog.records]
    assert "stdin:2: not valid UTF-8; bad bytes replaced by U+FFFD" in messages
    assert any(m.startswith("stdin:4: ") for m in messages)
    assert (
        messages[-1]
        == "stdin: 2 lines were not valid UTF-8; their bad bytes were replaced by U+FFFD"
    )


def test_strict_refuses_bad_bytes_naming_the_line():
    with pytest.raises(DataError, match=r"^in\.de:2: not valid UTF-8$"):
        list(InputLines([b"gut\n", b"schl\xe4ger\n"], "in.de", strict=True))


def test_one_line_replaces_every_line_break_by_a_space():
    text = "a" + "b".join(LINE_BREAKS) + "c"
    out = one_line(text)
    assert len(out.splitlines()) == 1 and len(out) == len(text)
    assert out == "a" + "b".join(" " * len(LINE_BREAKS)) + "c"


def test_a_translation_never_holds_a_line_break(translator, overfit):
    class Breaking(type(translator.tgt_tokenizer)):
        def decode(self, ids):  # a model whose output holds every kind of line break
            return "x".join(LINE_BREAKS)

    broken = type(translator)(**{**translator.__dict__})
    broken.tgt_tokenizer = Breaking(translator.tgt_tokenizer.model_bytes)
    hyps = broken.translate_nbest([overfit.sources[0]])
    assert isinstance(hyps[0][0], TextHypothesis)
    assert hyps[0][0].text.splitlines() == [hyps[0][0].text]


def run_translate(run: Path, stdin: bytes, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "tfcli", "translate", "-m", str(run), *args],
        input=stdin,
        capture_output=True,
        env=env,
        timeout=120,
    )


def test_odd_lines_keep_count_order_and_alignment(memorized_run, overfit):
    src, want = overfit.sources, overfit.translations
    odd = [
        b"\xef\xbb\xbf" + src[0].encode(),  # a BOM
        b"Null\x00Byte",
        "Ein\x85Satz\u2028mit\x0bUmbr\x0cuchen\x1c".encode(),
        ("Sehr lang " * 5000).encode(),  # 50,000 characters
        b"schl\xe4ger \xff",
        src[1].encode() + b"\r",
        b"",
        src[2].encode(),
        src[3].encode(),  # the last line, without its newline
    ]
    proc = run_translate(memorized_run, b"\n".join(odd))
    assert proc.returncode == 0, proc.stderr.decode()
    out = proc.stdout.decode("utf-8")
    assert out.endswith("\n")
    rows = out[:-1].split("\n")
    assert len(rows) == len(odd) and len(out.splitlines()) == len(odd)
    assert rows[5:] == [want[1], "", want[2], want[3]]
    err = proc.stderr.decode()
    assert "stdin:5: not valid UTF-8" in err and "1 line was not valid UTF-8" in err
    assert "input line 4 has" in err  # the long line was cut to fit, said so

    strict = run_translate(memorized_run, b"\n".join(odd), "--strict")
    assert strict.returncode == 1
    assert strict.stderr.decode().strip().splitlines()[-1] == "error: stdin:5: not valid UTF-8"
    assert b"Traceback" not in strict.stderr


def test_a_failed_translation_leaves_no_output_file(tmp_path, memorized_run, overfit):
    path, out = tmp_path / "in.de", tmp_path / "out.en"
    path.write_bytes(overfit.sources[0].encode() + b"\n\xff\n")
    proc = run_translate(memorized_run, b"", "-i", str(path), "-o", str(out), "--strict")
    assert proc.returncode == 1 and f"{path}:2: not valid UTF-8" in proc.stderr.decode()
    assert not out.exists() and os.listdir(tmp_path) == ["in.de"]


def _read_line(fd: int, timeout: float = 60.0) -> bytes:
    """One line from the pipe `fd`, waiting at most `timeout` seconds."""
    data, end = b"", time.monotonic() + timeout
    while not data.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], max(end - time.monotonic(), 0))
        if not ready:
            raise AssertionError(f"no line within {timeout} s (got {data!r})")
        chunk = os.read(fd, 1)
        if not chunk:
            break
        data += chunk
    return data


def test_a_line_typed_at_a_terminal_is_answered_before_the_next(memorized_run, overfit):
    master, slave = pty.openpty()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tfcli", "translate", "-m", str(memorized_run)],
        stdin=slave,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    os.close(slave)
    try:
        for k in [2, 0, 3]:
            os.write(master, overfit.sources[k].encode() + b"\n")
            assert _read_line(proc.stdout.fileno()) == overfit.translations[k].encode() + b"\n"
        os.write(master, b"\x04")  # Ctrl-D
        assert proc.wait(timeout=60) == 0
        err = proc.stderr.read().decode()
        assert "Ctrl-D ends" in err and err.count("> ") == 4  # a prompt before every read
    finally:
        proc.kill()
        os.close(master)


def test_an_input_file_shows_a_progress_bar_on_a_terminal(tmp_path, memorized_run, overfit):
    path = tmp_path / "in.de"
    path.write_text("\n".join(overfit.sources * 3) + "\n", encoding="utf-8")
    master, slave = pty.openpty()
    env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="120")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tfcli", "translate", "-m", str(memorized_run), "-i", str(path)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        env=env,
    )
    os.close(slave)
    shown = b""
    try:
        out, _ = proc.communicate(timeout=120)
        while select.select([master], [], [], 0.5)[0]:
            try:
                shown += os.read(master, 65536)
            except OSError:  # the terminal closed with the process
                break
    finally:
        proc.kill()
        os.close(master)
    assert proc.returncode == 0
    assert out.decode().splitlines() == overfit.translations * 3
    assert b"12 lines" in shown and b"lines/s" in shown
