"""Writes a kill cannot tear: every file is either its old or its new version, never half.

- `write_atomic`: a temporary `.NAME.tmpPID` in the same directory, flushed and fsynced, put in
  place with `os.replace`, then the directory fsynced so the rename survives a power cut.
- `copy_atomic`: the same for a copy of a file already written (a copy, not a hard link: a
  file changed in place later, by a user or a damaged disk, takes no other name with it).
- `append_line`: one line appended and fsynced (the metrics log); a torn last line is cut off
  on resume, back to the size its checkpoint recorded (`truncate`).
- `remove_stale_temps`: the temporary files of writes a kill interrupted.

A write that fails (disk full, permission denied) raises a `TfcliError` of one line naming the
path; the previous version of the file is left as it was.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from tfcli.errors import TfcliError

_TEMP = re.compile(r"\..+\.tmp\d+")


def write_error(path: str | Path, error: OSError, what: str) -> str:
    """One line on why `path` (a `what`: "checkpoint", "metrics log", ...) could not be written."""
    return f"{path}: cannot write {what} ({error.strerror or error})"


def temp_path(path: Path) -> Path:
    """Where `path` is written before it is renamed into place."""
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


class _Recorder:
    """A file's `write`, remembering the OSError it raised: torch.save turns it into a bare
    RuntimeError, which would hide "No space left on device"."""

    def __init__(self, f: BinaryIO) -> None:
        self.f, self.error = f, None

    def write(self, data: bytes) -> int:
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        self.f.flush()


def open_temp(path: Path) -> BinaryIO:
    """The temporary file's handle (a test replaces this to simulate a full disk)."""
    return open(path, "wb")


def fsync_dir(directory: Path) -> None:
    """Make the renames in `directory` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str | Path, write: Callable[[BinaryIO], None], what: str) -> None:
    """Write `path` through `write(file)`: complete and durable, or not at all."""
    path = Path(path)
    tmp = temp_path(path)
    recorder = None
    try:
        with open_temp(tmp) as f:
            recorder = _Recorder(f)
            write(recorder)  # type: ignore[arg-type]
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as e:
        raise TfcliError(write_error(path, e, what)) from None
    except RuntimeError:
        if recorder is None or recorder.error is None:
            raise
        raise TfcliError(write_error(path, recorder.error, what)) from None
    finally:
        _remove(tmp)


def write_text_atomic(path: str | Path, text: str, what: str) -> None:
    write_atomic(path, lambda f: f.write(text.encode("utf-8")), what)


def copy_atomic(source: Path, path: Path, what: str) -> None:
    """Copy the complete file `source` to `path`, atomically."""
    write_atomic(path, lambda f: _copy(source, f), what)


def _copy(source: Path, f: BinaryIO) -> None:
    with open(source, "rb") as src:
        shutil.copyfileobj(src, f)


def append_line(path: str | Path, line: str, what: str) -> None:
    """Append one line (a newline is added) and make it durable."""
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise TfcliError(write_error(path, e, what)) from None


def truncate(path: str | Path, size: int, what: str) -> None:
    """Cut `path` back to its first `size` bytes."""
    try:
        with open(path, "r+b") as f:
            f.truncate(size)
            os.fsync(f.fileno())
    except OSError as e:
        raise TfcliError(write_error(path, e, what)) from None


def remove_stale_temps(directory: Path) -> list[Path]:
    """Delete the temporary files that interrupted writes left in `directory`; return them."""
    stale = [p for p in directory.iterdir() if _TEMP.fullmatch(p.name) and p.is_file()]
    for p in stale:
        _remove(p)
    return stale


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):  # a read-only directory: the failed write says so
        path.unlink(missing_ok=True)
