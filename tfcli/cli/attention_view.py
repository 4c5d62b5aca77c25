"""`tfcli translate --show-attention / --attention-out / --alignment`: translations with the
encoder-decoder attention of each, as heat maps, a JSON file or Pharaoh word alignments."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer

from tfcli.cli.app import resolve_run
from tfcli.cli.lines import write_output
from tfcli.errors import DataError, TfcliError

ShowAttention = Annotated[
    bool,
    typer.Option(
        "--show-attention", help="Draw the encoder-decoder attention of each translation."
    ),
]
Layer = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option(help="Decoder layer of the attention, 1: the first \\[default: the last].", min=1),
]
Head = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option(help="Attention head, 1: the first \\[default: the mean of all heads].", min=1),
]
AttentionOut = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option(
        "--attention-out", help="Write every layer's and head's attention to this JSON file."
    ),
]
Alignment = Annotated[
    bool,
    typer.Option("--alignment", help="Add word alignments (Pharaoh, source-target) after a tab."),
]


@dataclass(frozen=True)
class AttentionView:
    """What to show of the attention, as asked on the command line."""

    show: bool = False
    layer: int | None = None  # 1-based; None: the last
    head: int | None = None  # 1-based; None: the mean over heads
    out: Path | None = None
    alignment: bool = False

    @property
    def wanted(self) -> bool:
        return self.show or self.out is not None or self.alignment

    def check(self, layers: int, heads: int) -> None:
        """--layer and --head name a layer and a head of this model."""
        if self.layer is not None and self.layer > layers:
            raise TfcliError(f"--layer {self.layer}: the model has {layers} decoder layers")
        if self.head is not None and self.head > heads:
            raise TfcliError(f"--head {self.head}: the model has {heads} attention heads")

    def describe(self, layers: int, heads: int) -> str:
        layer = f"layer {self.layer or layers} of {layers}"
        return f"{layer}, " + (f"head {self.head}" if self.head else f"mean of {heads} heads")


def translate_with_attention(
    lines: list[str],
    model: Path | None,
    output: Path | None,
    compile: bool,
    settings: dict,
    view: AttentionView,
) -> None:
    """Translate `lines` and show their attention as `view` asks.

    The translations (with an alignment column when asked) go to `output` or stdout; the heat
    maps go to stdout, in their place when there is no `output`.
    """
    from tfcli.translation.attention import attention_maps
    from tfcli.translation.translator import load_translator

    translator = load_translator(resolve_run(model), compile, **settings)
    cfg = translator.model.cfg
    view.check(cfg.decoder_layers, cfg.heads)
    nbest = translator.translate_nbest(lines)
    shown = nbest if view.alignment else [hyps[:1] for hyps in nbest]
    maps = attention_maps(translator, lines, shown)
    if view.out is not None:
        _write_json(view.out, lines, nbest, maps)
    rows = _rows(nbest, maps, translator.settings.n_best, view)
    if view.show:
        _draw(lines, nbest, maps, view, view.describe(cfg.decoder_layers, cfg.heads))
        if output is None:
            return
    write_output(rows, output)


def _rows(nbest, maps, n: int, view: AttentionView) -> list[str]:
    """One line per input line (n: `number<TAB>translation<TAB>score` rows per line), each
    with `<TAB>alignment` when asked."""
    from tfcli.translation.alignment import align

    rows = []
    for number, (hyps, line_maps) in enumerate(zip(nbest, maps), start=1):
        links = [align(m, view.layer, view.head) for m in line_maps] if view.alignment else []
        cells = [[h.text] if n == 1 else [str(number), h.text, f"{h.score:.4f}"] for h in hyps]
        cells = cells or [[""] if n == 1 else [str(number), "", "0.0000"]] * n
        if view.alignment:
            cells = [[*c, links[k] if k < len(links) else ""] for k, c in enumerate(cells)]
        rows += ["\t".join(c) for c in cells]
    return rows


def _draw(lines, nbest, maps, view: AttentionView, what: str) -> None:
    from rich.console import Console

    from tfcli.cli.heatmap import heat_map
    from tfcli.translation.alignment import align

    console = Console(highlight=False)
    for n, (line, hyps, line_maps) in enumerate(zip(lines, nbest, maps)):
        if n:
            console.print()
        if not line_maps:
            console.print(f"{line!r}: nothing to translate")
            continue
        m, text = line_maps[0], hyps[0].text
        weights = m.select(view.layer, view.head).tolist()
        title = f"{line}\n→ {text}\nencoder-decoder attention, {what}"
        console.print(heat_map(m.source_pieces, m.target_pieces, weights, title), soft_wrap=True)
        if view.alignment:
            console.print(f"alignment: {align(m, view.layer, view.head)}")


def _write_json(path: Path, lines, nbest, maps) -> None:
    """One object per input line: the best translation, its pieces and its attention,
    `attention[layer][head][target piece][source piece]`."""
    records = []
    for line, hyps, line_maps in zip(lines, nbest, maps):
        m = line_maps[0] if line_maps else None
        records.append(
            {
                "source": line,
                "translation": hyps[0].text if hyps else "",
                "source_pieces": m.source_pieces if m else [],
                "target_pieces": m.target_pieces if m else [],
                "attention": m.weights.round(decimals=5).tolist() if m else [],
            }
        )
    try:
        path.write_text(json.dumps(records, ensure_ascii=False) + "\n", encoding="utf-8")
    except OSError as e:
        raise DataError(f"{path}: cannot write ({e.strerror})") from None
