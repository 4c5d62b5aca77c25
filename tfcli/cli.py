"""The `tfcli` command: a thin Typer layer over train / translate / eval / average / export.

Each command parses its arguments, calls one function and turns a `TfcliError` into one line
on stderr with exit code 1. stdout carries results only. Heavy modules (torch) are imported
inside the commands so that `tfcli --help` stays fast.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional, TypeVar

import typer
from rich.console import Console

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


def _setup_logging(verbose: bool) -> None:
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
def _user_errors() -> Iterator[None]:
    """Print a TfcliError (or an interrupted run) as one line and exit non-zero."""
    try:
        yield
    except TfcliError as e:
        err.print(f"[bold red]error:[/] {e}", highlight=False, markup=True, soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err.print("interrupted")
        raise typer.Exit(130) from None


def _run(fn: Callable[[], T]) -> T:
    with _user_errors():
        return fn()


Verbose = Annotated[bool, typer.Option("--quiet/--verbose", help="Hide/show progress logs.")]


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="YAML config file.", dir_okay=False)],
    set_: Annotated[
        Optional[list[str]],  # noqa: UP045 - Typer needs Optional here
        typer.Option("--set", help="Override a config key: section.key=value (repeatable)."),
    ] = None,
    output_dir: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--output-dir", "-o", help="Run directory [default: runs/CONFIG_NAME]."),
    ] = None,
    quiet: Verbose = False,
) -> None:
    """Train a model; re-running on an existing run directory resumes it.

    [bold]Example:[/] tfcli train configs/quickstart.yaml --set train.max_minutes=5
    """
    _setup_logging(not quiet)
    from tfcli.config import load_config
    from tfcli.progress import TrainProgress, print_train_summary

    cfg = _run(lambda: load_config(config, set_ or []))
    run_dir = output_dir or Path("runs") / config.stem
    from tfcli.train import train as train_run

    with TrainProgress(err, enabled=not quiet) as progress:
        result = _run(lambda: train_run(cfg, run_dir, progress))
    if os.environ.get("RANK", "0") != "0":
        return  # under torchrun, process 0 reports
    print_train_summary(err, result)
    if result.test is not None:
        typer.echo(f"test BLEU {result.test['bleu']:.2f}  chrF {result.test['chrf']:.2f}")


@app.command()
def translate(
    text: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Argument(help="Sentences to translate; none: read --input or stdin."),
    ] = None,
    model: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--model", "-m", help="Run directory or checkpoint [default: latest run]."),
    ] = None,
    input_: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--input", "-i", help="Read lines from this file.", dir_okay=False),
    ] = None,
    output: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--output", "-o", help="Write translations here instead of stdout."),
    ] = None,
    beam: Annotated[Optional[int], typer.Option(help="Beam size; 1: greedy.", min=1)] = None,  # noqa: UP045
    n_best: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option("--n-best", help="Print this many hypotheses per line (tab: score).", min=1),
    ] = None,
    batch_size: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option("--batch-size", help="Source tokens per batch.", min=16),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    precision: Annotated[
        str, typer.Option(help="fp32, bf16, fp16 (CUDA) or auto (bf16 where native).")
    ] = "fp32",
    compile_: Annotated[
        bool, typer.Option("--compile", help="torch.compile the model (slow start).")
    ] = False,
) -> None:
    """Translate sentences: one output line per input line, in order.

    [bold]Examples:[/]
      tfcli translate -m runs/quickstart "Guten Morgen."
      cat input.de | tfcli translate -m runs/quickstart > output.en
    """
    _setup_logging(False)
    from tfcli.commands import translate_command

    _run(
        lambda: translate_command(
            text, model, input_, output, beam, n_best, batch_size, device, err, precision, compile_
        )
    )


@app.command("eval")
def eval_(
    src: Annotated[Path, typer.Option("--src", help="Source file to translate.", dir_okay=False)],
    ref: Annotated[Path, typer.Option("--ref", help="Reference translations.", dir_okay=False)],
    model: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--model", "-m", help="Run directory or checkpoint [default: latest run]."),
    ] = None,
    hyp_out: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--hyp-out", help="Also write the translations to this file."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    beam: Annotated[Optional[int], typer.Option(help="Beam size; 1: greedy.", min=1)] = None,  # noqa: UP045
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
) -> None:
    """Translate --src and score it against --ref: corpus BLEU and chrF (sacrebleu).

    [bold]Example:[/] tfcli eval -m runs/quickstart --src data/de-en/test.de --ref data/de-en/test.en
    """
    _setup_logging(False)
    from tfcli.commands import eval_command

    scores = _run(lambda: eval_command(model, src, ref, hyp_out, beam, device, err))
    if as_json:
        typer.echo(json.dumps(scores.as_dict(), indent=2))
        return
    from tfcli.progress import scores_table

    Console().print(scores_table(scores))


@app.command()
def average(
    checkpoints: Annotated[list[Path], typer.Argument(help="Checkpoints of one model.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Averaged checkpoint file.")],
) -> None:
    """Average the weights of several checkpoints into one.

    [bold]Example:[/] tfcli average runs/big/checkpoint_step*.pt -o runs/big/averaged.pt
    """
    from tfcli.checkpoint import average_weights, save_checkpoint

    _run(lambda: save_checkpoint(output, average_weights(checkpoints)))
    err.print(f"averaged {len(checkpoints)} checkpoints into {output}")


@app.command()
def export(
    out_dir: Annotated[Path, typer.Argument(help="Directory to write the exported model to.")],
    model: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--model", "-m", help="Run directory or checkpoint [default: latest run]."),
    ] = None,
    format_: Annotated[str, typer.Option("--format", help="Export format: ctranslate2.")] = (
        "ctranslate2"
    ),
    quantization: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="CTranslate2 weight type, e.g. int8, float16."),
    ] = None,
) -> None:
    """Export a trained model for another runtime (CTranslate2).

    [bold]Example:[/] tfcli export -m runs/quickstart --format ctranslate2 exported/quickstart
    """
    from tfcli.commands import export_command

    path = _run(lambda: export_command(model, format_, out_dir, quantization, err))
    err.print(f"exported to {path}")


def main() -> None:  # pragma: no cover - the console script calls `app`
    app(prog_name="tfcli")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
