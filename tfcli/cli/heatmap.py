"""An attention map drawn in the terminal: source pieces across, target pieces down, each
cell shaded (and, on a colour terminal, coloured) by its weight."""

from __future__ import annotations

from collections.abc import Sequence

from rich.color import Color
from rich.style import Style
from rich.text import Text

SHADES = " ░▒▓█"  # weight below 0.125, below 0.375, below 0.625, below 0.875, above
HEADER_ROWS = 12  # longest source piece written out; longer ones end in "…"
LOW, HIGH = (40, 40, 90), (255, 210, 60)  # colours of weight 0 and 1


def shade(weight: float) -> tuple[str, Style]:
    """The block character and colour of one cell."""
    level = min(len(SHADES) - 1, int(weight * (len(SHADES) - 1) + 0.5))
    rgb = (round(lo + (hi - lo) * weight) for lo, hi in zip(LOW, HIGH))
    return SHADES[level], Style(color=Color.from_rgb(*rgb))


def _column_headers(pieces: Sequence[str], indent: int) -> list[Text]:
    """The source pieces written top to bottom, one two-character column each, aligned at the
    bottom."""
    cut = [p if len(p) <= HEADER_ROWS else p[: HEADER_ROWS - 1] + "…" for p in pieces]
    height = max(len(p) for p in cut)
    rows = []
    for r in range(height):
        chars = (p[r - (height - len(p))] if r >= height - len(p) else " " for p in cut)
        rows.append(Text(" " * indent + "".join(f"{c} " for c in chars), style="bold"))
    return rows


def heat_map(
    source: Sequence[str], target: Sequence[str], weights: Sequence[Sequence[float]], title: str
) -> Text:
    """The map of `weights` (len(target) rows of len(source) weights) under `title`."""
    width = max(len(p) for p in target) + 1
    lines = [Text(title), *_column_headers(source, width)]
    for piece, row in zip(target, weights):
        line = Text(piece.ljust(width), style="bold")
        for w in row:
            char, style = shade(float(w))
            line.append(char * 2, style=style)
        lines.append(line)
    legend = "  ".join(f"{c} {t:g}+" for c, t in zip(SHADES[1:], (0.125, 0.375, 0.625, 0.875)))
    lines.append(Text(f"weights: {legend}", style="dim"))
    return Text("\n").join(lines)
