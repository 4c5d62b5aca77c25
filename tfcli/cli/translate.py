"""`tfcli translate`: one output line per input line, in input order."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tfcli.cli import attention_view, options
from tfcli.cli.app import app, resolve_run, run, setup_logging
from tfcli.cli.line_source import LineSource
from tfcli.cli.lines import OutputLines, read_input


@app.command()
def translate(
    text: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Argument(help="Sentences to translate; none: read --input or stdin."),
    ] = None,
    model: options.Model = None,
    input_: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--input", "-i", help="Read lines from this file.", dir_okay=False),
    ] = None,
    output: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--output", "-o", help="Write translations here instead of stdout."),
    ] = None,
    beam: options.Beam = None,
    n_best: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(
            "--n-best",
            help="Print this many hypotheses per line, with scores \\[default: the run's "
            "decode.n_best].",
            min=1,
        ),
    ] = None,
    batch_tokens: options.BatchTokens = None,
    batch_size: options.BatchSize = None,
    device: options.Device = None,
    precision: options.Precision = None,
    compile_: Annotated[
        bool, typer.Option("--compile", help="torch.compile the model (slow start).")
    ] = False,
    show_attention: attention_view.ShowAttention = False,
    layer: attention_view.Layer = None,
    head: attention_view.Head = None,
    attention_out: attention_view.AttentionOut = None,
    alignment: attention_view.Alignment = False,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Refuse input that is not valid UTF-8 (default: replace the bad bytes by "
            "U+FFFD, with a warning naming the line).",
        ),
    ] = False,
) -> None:
    """Translate sentences: one output line per input line, in order.

    Input is read and translated in chunks, each written as soon as it is done; typed at a
    terminal, each line is translated when entered (Ctrl-D ends).

    [bold]Examples:[/]
      tfcli translate -m runs/quickstart "Guten Morgen."
      cat input.de | tfcli translate -m runs/quickstart > output.en
      tfcli translate -m runs/quickstart --show-attention --alignment "Guten Morgen."
    """
    setup_logging(False)
    settings = dict(beam=beam, n_best=n_best, batch_tokens=batch_tokens or batch_size)
    settings |= dict(device=device, precision=precision)
    view = attention_view.AttentionView(show_attention, layer, head, attention_out, alignment)
    if view.wanted:
        show = attention_view.translate_with_attention
        run(lambda: show(read_input(text, input_, strict), model, output, compile_, settings, view))
        return
    source = LineSource(text, input_, strict)
    run(lambda: translate_lines(source, model, output, compile_, settings))


def translate_lines(
    source: LineSource, model: Path | None, output: Path | None, compile: bool, settings: dict
) -> None:
    """Translate the lines of `source` with the run's decode settings overridden by
    `settings` (None: keep), writing each chunk's rows as soon as it is done."""
    from tfcli.translation.streaming import translate_chunks
    from tfcli.translation.translator import load_translator

    source.check()
    translator = load_translator(resolve_run(model), compile, **settings)
    n = translator.settings.n_best
    with source.lines() as (lines, chunk_lines, progress):
        rows = translate_chunks(translator, lines, chunk_lines)
        OutputLines(output).write_chunks(progress.count(rows, n))
