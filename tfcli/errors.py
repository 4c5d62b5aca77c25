"""Errors a user can fix. The CLI turns each into one line on stderr and exit code 1."""

from __future__ import annotations

from pathlib import Path


class TfcliError(Exception):
    """Base class: the message is shown to the user as is."""


class ConfigError(TfcliError):
    """A config file or override is invalid; the message names the dotted key."""


class DataError(TfcliError):
    """An input file is missing, unreadable or inconsistent; the message names the file."""


class CheckpointError(TfcliError):
    """A run directory or checkpoint cannot be used."""


def read_error(path: str | Path, error: OSError, what: str) -> str:
    """One line on why `path` (a `what`: "text file", "checkpoint", ...) could not be read."""
    if isinstance(error, FileNotFoundError):
        return f"{path}: {what} not found"
    if isinstance(error, IsADirectoryError):
        return f"{path}: is a directory, not a {what}"
    return f"{path}: cannot read {what} ({error.strerror or error})"
