"""`tfcli train`: train a run directory from a YAML config, or resume it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Optional

import typer

from tfcli.cli import options
from tfcli.cli.app import app, err, run, setup_logging

InitFrom = Annotated[
    Optional[str],  # noqa: UP045 - Typer reads the annotation at runtime
    typer.Option(
        "--init-from",
        metavar="RUN",
        help="Fine-tune: start from this run's (or checkpoint's) model \\[train.init_from].",
    ),
]
Overwrite = Annotated[
    bool,
    typer.Option(
        "--overwrite",
        help="Train the run directory again from step 0, removing what training wrote there.",
    ),
]


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="YAML config file.", dir_okay=False)],
    set_: options.Overrides = None,
    output_dir: options.OutputDir = None,
    init_from: InitFrom = None,
    overwrite: Overwrite = False,
    quiet: options.Quiet = False,
) -> None:
    """Train a model; re-running on an existing run directory resumes it.

    SIGTERM or Ctrl-C saves the run and exits (143, 130); the same command resumes it.

    [bold]Example:[/] tfcli train configs/quickstart.yaml --set train.max_minutes=5
    """
    setup_logging(not quiet)
    from tfcli.cli.progress import print_train_summary
    from tfcli.config import load_config
    from tfcli.training.distributed import Distributed

    cfg = run(lambda: load_config(config, set_ or []))
    if init_from is not None:
        t = run(lambda: dataclasses.replace(cfg.train, init_from=init_from))
        cfg = dataclasses.replace(cfg, train=t)
    main = Distributed().main  # under torchrun, process 0 reports
    result = _train(cfg, output_dir or Path("runs") / config.stem, overwrite, quiet, main)
    if not main:
        return
    if result.message is not None:  # "already trained ...": the log says it unless --quiet
        if quiet:
            err.print(result.message, highlight=False)
        return
    print_train_summary(err, result)
    if result.test is not None:
        typer.echo(f"test BLEU {result.test['bleu']:.2f}  chrF {result.test['chrf']:.2f}")


def _train(cfg, run_dir: Path, overwrite: bool, quiet: bool, main: bool):  # noqa: ANN001, ANN202
    """Train with a progress bar; a stop on a signal says so and exits 143 / 130. Under
    torchrun only process 0 prints an error; the others exit 1 without a word."""
    from tfcli.cli.progress import TrainProgress
    from tfcli.errors import TfcliError
    from tfcli.training.signals import TrainingStopped
    from tfcli.training.trainer import train

    def train_here(progress: TrainProgress):  # noqa: ANN202 - a TrainResult
        try:
            return train(cfg, run_dir, progress, overwrite)
        except TfcliError:
            if main:
                raise
            raise typer.Exit(1) from None

    try:
        with TrainProgress(err, enabled=not quiet and main) as progress:
            return run(lambda: train_here(progress))
    except TrainingStopped as stopped:
        if main:
            err.print(str(stopped), highlight=False)
        raise typer.Exit(stopped.exit_code) from None
