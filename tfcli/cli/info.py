"""`tfcli info`: what a run directory or checkpoint holds, as a table or as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from tfcli.cli.app import app, run


@app.command()
def info(
    path: Annotated[Path, typer.Argument(help="Run directory or checkpoint file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show a model: parameters, settings, vocabulary, training, scores, files.

    [bold]Example:[/] tfcli info runs/quickstart
    """
    from tfcli.run_info import describe

    facts = run(lambda: describe(path))
    if as_json:
        typer.echo(json.dumps(facts, indent=2, ensure_ascii=False))
        return
    Console(highlight=False).print(info_table(facts))


def _size(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB" if n >= 2**20 else f"{n / 2**10:,.1f} KiB"


def _model(m: dict[str, Any]) -> str:
    return (
        f"{m['encoder_layers']}+{m['decoder_layers']} layers, d_model {m['d_model']}, "
        f"{m['heads']} heads, d_ff {m['d_ff']}, {m['norm']}-norm, {m['activation']}, "
        f"dropout {m['dropout']} (attention {m['attention_dropout']}), "
        f"tied embeddings: {m['tie_embeddings']}, {m['max_positions']} positions"
    )


def _tokenizer(f: dict[str, Any]) -> str:
    tok, vocab = f["tokenizer"], f["vocabulary"]
    if vocab["shared"]:
        return f"shared {tok['type']}, {vocab['source']:,} pieces"
    return f"{tok['type']}, {vocab['source']:,} source and {vocab['target']:,} target pieces"


def _training(t: dict[str, Any]) -> str:
    text = f"{t['steps']:,} updates"
    if t["epochs_completed"] is not None:
        text += f", {t['epochs_completed']} epochs + {t['batches_into_epoch']:,} batches"
    if t["seconds"] is not None:
        text += f", {t['seconds'] / 60:.1f} min"
    return text


def _scores(f: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    if (dev := f["dev"]) is not None:
        rows.append(
            (
                "best dev BLEU",
                f"{dev['bleu']:.2f} at update {dev['step']:,} ({dev['decoding']}, "
                f"{dev['sentences']} sentences)\n{dev['signature']}",
            )
        )
    if (test := f["test"]) is not None:
        rows.append(
            (
                "test",
                f"BLEU {test['bleu']:.2f}, chrF {test['chrf']:.2f} ({test['sentences']:,} "
                f"sentences)\n{test['bleu_signature']}",
            )
        )
    return rows


def info_table(f: dict[str, Any]) -> Table:
    """The facts of `tfcli.run_info.describe` as a two-column table."""
    ckpt = f["checkpoint"]
    table = Table(title=f"{f['path']}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    langs = f["languages"]
    table.add_row("languages", f"{langs['source']} → {langs['target']}")
    table.add_row("parameters", f"{f['parameters']:,}")
    table.add_row("model", _model(f["model"]))
    table.add_row("tokenizer", _tokenizer(f))
    table.add_row("trained", _training(f["training"]))
    for name, text in _scores(f):
        table.add_row(name, text)
    table.add_row("checkpoint read", f"{ckpt['file']} (update {ckpt['step']:,})")
    files = [
        f"{e['file']}  {_size(e['bytes'])}" + (f"  update {e['step']:,}" if "step" in e else "")
        for e in f["files"]
    ]
    table.add_row("files", "\n".join(files))
    table.add_row("size on disk", _size(f["size_bytes"]))
    return table
