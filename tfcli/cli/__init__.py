"""The `tfcli` command: a thin Typer layer, one module per command (or pair of commands).

Each command parses its arguments, calls one function and turns a `TfcliError` into one line
on stderr with exit code 1 (app.py); options shared by several commands are in options.py.
"""

from tfcli.cli import checkpoints, evaluate, info, plot, prepare, serve, train, translate  # noqa: F401 - registers commands
from tfcli.cli.app import app

__all__ = ["app"]
