"""`tfcli average` and `tfcli export`: new model files from trained checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from tfcli.cli import options
from tfcli.cli.app import app, err, resolve_run, run


@app.command()
def average(
    checkpoints: Annotated[list[Path], typer.Argument(help="Checkpoints of one model.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Averaged checkpoint file.")],
) -> None:
    """Average the weights of several checkpoints into one.

    [bold]Example:[/] tfcli average runs/big/checkpoint_step*.pt -o runs/big/averaged.pt
    """
    from tfcli.checkpoint import average_weights, save_checkpoint

    run(lambda: save_checkpoint(output, average_weights(checkpoints)))
    err.print(f"averaged {len(checkpoints)} checkpoints into {output}")


@app.command()
def export(
    out_dir: Annotated[Path, typer.Argument(help="Directory to write the exported model to.")],
    model: options.Model = None,
    format_: Annotated[
        Literal["ctranslate2"], typer.Option("--format", help="Export format.")
    ] = "ctranslate2",
    quantization: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="CTranslate2 weight type, e.g. int8, float16."),
    ] = None,
) -> None:
    """Export a trained model for another runtime (CTranslate2).

    [bold]Example:[/] tfcli export -m runs/quickstart --format ctranslate2 exported/quickstart
    """

    def export_model() -> Path:
        from tfcli.translation.export import export_ctranslate2

        return export_ctranslate2(resolve_run(model), out_dir, quantization)

    err.print(f"exported to {run(export_model)}")
