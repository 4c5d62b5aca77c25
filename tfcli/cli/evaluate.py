"""`tfcli eval`: translate a source file and score it against references with sacrebleu."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from tfcli.cli import options
from tfcli.cli.app import app, resolve_run, run, setup_logging
from tfcli.cli.lines import write_output


@app.command("eval")
def eval_(
    src: Annotated[Path, typer.Option("--src", help="Source file to translate.", dir_okay=False)],
    ref: Annotated[Path, typer.Option("--ref", help="Reference translations.", dir_okay=False)],
    model: options.Model = None,
    hyp_out: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--hyp-out", help="Also write the translations to this file."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    beam: options.Beam = None,
    batch_tokens: options.BatchTokens = None,
    device: options.Device = None,
    precision: options.Precision = None,
) -> None:
    """Translate --src and score it against --ref: corpus BLEU and chrF (sacrebleu).

    [bold]Example:[/] tfcli eval -m runs/quickstart --src data/de-en/test.de --ref data/de-en/test.en
    """
    setup_logging(False)
    settings = dict(beam=beam, batch_tokens=batch_tokens, device=device, precision=precision)
    scores = run(lambda: evaluate(model, src, ref, hyp_out, settings))
    if as_json:
        typer.echo(json.dumps(scores.as_dict(), indent=2))
        return
    from tfcli.cli.progress import scores_table

    Console().print(scores_table(scores))


def evaluate(model: Path | None, src: Path, ref: Path, hyp_out: Path | None, settings: dict):
    """Translate `src`, write the hypotheses if asked, and score them against `ref`."""
    from tfcli.data.text import read_parallel
    from tfcli.translation.scoring import score
    from tfcli.translation.translator import load_translator

    src_lines, ref_lines = read_parallel(src, ref)
    translator = load_translator(resolve_run(model), **settings)
    hyps = translator.translate(src_lines)
    if hyp_out is not None:
        write_output(hyps, hyp_out)
    return score(hyps, ref_lines)
