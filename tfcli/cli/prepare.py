"""`tfcli prepare`: the tokenizers and the encoded training pairs of a run directory, made
once so that `tfcli train` with the same config and directory starts from them."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from types import TracebackType
from typing import Annotated

import typer
from rich.console import Console

from tfcli.cli import options
from tfcli.cli.app import app, err, run, setup_logging
from tfcli.cli.progress import progress_bar

STEPS = 10_000  # the bar's resolution: preparing reports the share of the source file read


class PrepareProgress:
    """A bar with lines, lines/s and ETA on a terminal; None (log lines) otherwise."""

    def __init__(self, console: Console) -> None:
        self.bar = progress_bar("prepare", console)
        self.task = self.bar.add_task("prepare", total=STEPS, info="")
        self.start = time.monotonic()

    def __call__(self, lines: int, done: float) -> None:
        rate = lines / max(time.monotonic() - self.start, 1e-9)
        self.bar.start()  # no-op once started
        info = f"{lines:,} lines | {rate:,.0f} lines/s"
        self.bar.update(self.task, completed=int(done * STEPS), info=info)

    def __enter__(self) -> PrepareProgress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.bar.live.is_started:
            self.bar.stop()


@app.command()
def prepare(
    config: Annotated[Path, typer.Argument(help="YAML config file.", dir_okay=False)],
    set_: options.Overrides = None,
    output_dir: options.OutputDir = None,
    quiet: options.Quiet = False,
) -> None:
    """Tokenize the training data once (in parallel) into the run directory.

    A later [bold]tfcli train[/] with the same config and directory uses it; a changed source
    file, tokenizer or length filter is prepared again, an unchanged one is reused.

    [bold]Example:[/] tfcli prepare configs/base.yaml --set data.train=corpus/train
    """
    setup_logging(not quiet)
    from tfcli.config import load_config

    cfg = run(lambda: load_config(config, set_ or []))
    run_dir = output_dir or Path("runs") / config.stem
    bar = PrepareProgress(err) if not quiet and err.is_terminal else None  # else log lines
    with bar or contextlib.nullcontext():
        corpus = run(lambda: _prepare(cfg, run_dir, bar))
    if not quiet:
        err.print(f"prepared {len(corpus)} pairs in {corpus.directory}", highlight=False)


def _prepare(cfg, run_dir: Path, progress):  # noqa: ANN001, ANN202 - a PreparedCorpus
    """A new run directory gets config.yaml too, so that a train with other tokenizer keys
    drops the tokenizer prepared here (a trained run keeps its own)."""
    from tfcli.run_dir import RunDir
    from tfcli.training.config_changes import save_run_config
    from tfcli.training.distributed import Distributed
    from tfcli.training.resume import drop_stale_tokenizers, prepare_run_dir
    from tfcli.training.training_data import open_training_corpus

    run_dir_ = RunDir(run_dir)
    prepare_run_dir(run_dir_, overwrite=False)
    if not run_dir_.checkpoints():
        drop_stale_tokenizers(run_dir_, cfg)
        save_run_config(run_dir_, cfg, None)
    return open_training_corpus(cfg, run_dir_, Distributed(), progress)
