"""Training curves of a run: train and dev loss, dev BLEU and the learning rate against the
update step, from its metrics.jsonl, drawn in the terminal (plotext) or to an image file
(matplotlib, the `plot` extra).

The train loss and learning rate come from the "train" records; a run written before those
existed has only the train loss of each validation record, and no learning rate curve.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tfcli.errors import DataError, TfcliError
from tfcli.metrics_log import read_metrics
from tfcli.run_dir import RunDir

MARKERS = ("•", "x")  # the curves of a panel apart without colours too


@dataclass(frozen=True)
class Curve:
    """One series: (update step, value) points in step order."""

    label: str
    steps: list[int]
    values: list[float]


@dataclass(frozen=True)
class Panel:
    """One plot: its title and the curves drawn in it."""

    title: str
    curves: list[Curve]


def _curve(label: str, records: list[dict], key: str) -> Curve:
    points = sorted(
        (r["step"], float(r[key])) for r in records if isinstance(r.get(key), int | float)
    )
    return Curve(label, [s for s, _ in points], [v for _, v in points])


def read_panels(run: str | Path) -> list[Panel]:
    """The panels of a run directory that have data: loss, dev BLEU, learning rate."""
    path = Path(run)
    if not path.is_dir():
        raise DataError(f"{path}: no such run directory")
    metrics = RunDir(path).metrics
    if not metrics.is_file():
        raise DataError(f"{metrics}: no metrics log (the run has not validated yet)")
    log = read_metrics(metrics)
    train = log.train or log.valid  # older runs: the train loss of each validation
    panels = [
        Panel("loss", [_curve("train", train, "train_loss"), _curve("dev", log.valid, "dev_loss")]),
        Panel("dev BLEU", [_curve("dev BLEU", log.valid, "dev_bleu")]),
        Panel("learning rate", [_curve("lr", log.train, "lr")]),
    ]
    panels = [Panel(p.title, [c for c in p.curves if c.steps]) for p in panels]
    panels = [p for p in panels if p.curves]
    if not panels:
        raise DataError(f"{metrics}: no training or validation records to plot")
    return panels


def _ticks(first: int, last: int, count: int = 6) -> list[int]:
    """At most `count` + 1 round update numbers (steps of 1, 2 or 5 times a power of ten)
    between `first` and `last`."""
    if first == last:
        return [first]
    nice = (m * 10**e for e in range(16) for m in (1, 2, 5))
    step = next(n for n in nice if (last - first) / n <= count)
    return list(range(-(-first // step) * step, last + 1, step))


def terminal_plot(panels: list[Panel], width: int, height: int, color: bool) -> str:
    """The panels one above the other, `height` lines each, as text (with colour codes when
    `color`)."""
    import plotext

    figure = plotext.figure
    figure.clear()
    plotext.terminal.limit(width=False, height=False)  # the size asked for, not the screen's
    figure.plot_size(width, height * len(panels) + 1)  # + the x label
    figure.subplots(len(panels), 1)
    steps = sorted({s for p in panels for c in p.curves for s in c.steps})
    ticks = _ticks(steps[0], steps[-1])
    for row, panel in enumerate(panels, start=1):
        plot = figure.subplot(row, 1)
        plot.plot_size(width, height)
        for curve, marker in zip(panel.curves, MARKERS):
            signal = plot.signal(curve.steps, curve.values, marker=marker)
            signal.lines()
            if len(panel.curves) > 1:
                signal.label(curve.label)
            plot.draw(signal)
        plot.title(panel.title)
        x_axis = plot.ruler(axis="x")  # one update range for every panel
        x_axis.lim(steps[0], steps[-1])
        x_axis.ticks(ticks, [f"{t:,}" for t in ticks])
        if len(panel.curves) > 1:  # top right: curves of a loss start high on the left
            top = max(v for c in panel.curves for v in c.values)
            plot.legend(x=steps[-1], y=top, ha="right", va="top", relative=True)
    plot.label("update", axis="x")
    built = figure.build()
    text = built.string() if color else plotext.uncolorize(built)
    return text.rstrip("\n")


def save_plot(panels: list[Panel], path: Path) -> None:
    """The panels one above the other in an image file; its suffix names the format."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display needed
        from matplotlib import pyplot
    except ImportError:
        raise TfcliError("--out needs matplotlib: pip install 'tfcli[plot]'") from None
    fig, axes = pyplot.subplots(len(panels), 1, figsize=(8, 2.6 * len(panels)), sharex=True)
    for ax, panel in zip([axes] if len(panels) == 1 else axes, panels):
        for curve in panel.curves:
            ax.plot(
                curve.steps,
                curve.values,
                label=curve.label,
                marker="." if len(curve.steps) < 30 else None,
            )
        ax.set_title(panel.title)
        ax.grid(alpha=0.3)
        if len(panel.curves) > 1:
            ax.legend()
    ax.set_xlabel("update")
    fig.tight_layout()
    try:
        fig.savefig(path)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot write the plot ({e})") from None
    finally:
        pyplot.close(fig)
