"""`tfcli plot`: a run's training curves in the terminal, or in an image file."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from tfcli.cli.app import app, err, run


@app.command()
def plot(
    run_dir: Annotated[Path, typer.Argument(help="Run directory.")],
    out: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            "--out", "-o", help="Write an image instead (.png, .svg, .pdf); needs tfcli[plot]."
        ),
    ] = None,
    width: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(help="Columns \\[default: the terminal's width].", min=40),
    ] = None,
    height: Annotated[int, typer.Option(help="Lines per panel.", min=8)] = 14,
) -> None:
    """Plot train and dev loss, dev BLEU and the learning rate against the update step.

    [bold]Examples:[/]
      tfcli plot runs/quickstart
      tfcli plot runs/quickstart --out curves.png
    """
    from tfcli.plotting import read_panels, save_plot, terminal_plot

    panels = run(lambda: read_panels(run_dir))
    if out is not None:
        run(lambda: save_plot(panels, out))
        err.print(f"wrote {out}", highlight=False)
        return
    columns = width or min(shutil.get_terminal_size((100, 24)).columns, 120)
    typer.echo(terminal_plot(panels, columns, height, color=sys.stdout.isatty()))
