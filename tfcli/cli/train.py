"""`tfcli train`: train a run directory from a YAML config, or resume it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tfcli.cli import options
from tfcli.cli.app import app, err, run, setup_logging


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="YAML config file.", dir_okay=False)],
    set_: options.Overrides = None,
    output_dir: options.OutputDir = None,
    quiet: options.Quiet = False,
) -> None:
    """Train a model; re-running on an existing run directory resumes it.

    [bold]Example:[/] tfcli train configs/quickstart.yaml --set train.max_minutes=5
    """
    setup_logging(not quiet)
    from tfcli.cli.progress import TrainProgress, print_train_summary
    from tfcli.config import load_config

    cfg = run(lambda: load_config(config, set_ or []))
    run_dir = output_dir or Path("runs") / config.stem
    from tfcli.training.distributed import Distributed
    from tfcli.training.trainer import train as train_run

    with TrainProgress(err, enabled=not quiet) as progress:
        result = run(lambda: train_run(cfg, run_dir, progress))
    if not Distributed().main:
        return  # under torchrun, process 0 reports
    print_train_summary(err, result)
    if result.test is not None:
        typer.echo(f"test BLEU {result.test['bleu']:.2f}  chrF {result.test['chrf']:.2f}")
