"""The Typer app and what every command shares: the stderr console, logging, and turning a
`TfcliError` into one line on stderr with exit code 1.

stdout carries results only. Heavy modules (torch) are imported inside the commands so that
`tfcli --help` stays fast.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from tfcli.errors import TfcliError

app = typer.Typer(
    name="tfcli",
    help="Neural machine translation: train a Transformer, translate text, score it.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)
T = TypeVar("T")


def setup_logging(verbose: bool) -> None:
    from rich.logging import RichHandler

    handler = RichHandler(console=err, show_path=False, show_time=False, markup=False)
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        handlers=[handler],
        format="%(message)s",
        force=True,
    )
    logging.getLogger("tfcli").setLevel(logging.INFO if verbose else logging.WARNING)


@contextmanager
def user_errors() -> Iterator[None]:
    """Print a TfcliError (or an interrupted run) as one line and exit non-zero."""
    try:
        yield
    except TfcliError as e:
        err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err.print("interrupted")
        raise typer.Exit(130) from None


def run(fn: Callable[[], T]) -> T:
    """fn(), with a user's error printed as one line."""
    with user_errors():
        return fn()


def resolve_run(model: Path | None) -> Path:
    """The run or checkpoint given with -m, else the most recently trained run (said on stderr)."""
    if model is not None:
        return model
    from tfcli.checkpoint import latest_run

    found = latest_run()
    err.print(f"using the latest run: {found}", highlight=False)
    return found


def _flags_without_value_type() -> None:
    """Typer (0.2x) lists every flag with a value type, as in `--help <bool>`, as if it took a
    value; flags take none, so their type column stays empty."""
    option = getattr(typer.core, "TyperOption", None)
    shown = getattr(option, "display_type_rich", None)
    if option is None or shown is None:
        return

    def display_type_rich(self, ctx):  # noqa: ANN001, ANN202 - Typer's signature
        return None if getattr(self, "is_flag", False) else shown(self, ctx)

    option.display_type_rich = display_type_rich


_flags_without_value_type()
