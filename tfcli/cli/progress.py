"""Rich output for the CLI: the training progress bar, summaries and score tables (stderr)."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

STEPS = 10_000  # the bar's resolution: training reports a fraction done


def progress_bar(label: str, console: Console, **options: object) -> Progress:
    """The CLI's one bar layout: label, bar, percent, an `info` field, elapsed time and ETA."""
    return Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        **options,  # type: ignore[arg-type]
    )


class TrainProgress:
    """A progress bar with step, loss, learning rate, tokens/s and ETA."""

    def __init__(self, console: Console, enabled: bool = True) -> None:
        self.bar = progress_bar("train", console, disable=not enabled)
        self.task = self.bar.add_task("train", total=STEPS, info="starting")
        self.console = console
        self.plain = enabled and not console.is_terminal  # a log file: one line per update

    def __enter__(self) -> TrainProgress:
        return self  # the bar starts with the first update: a setup error is printed alone

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.bar.live.is_started:  # a bar never started prints nothing, not even a newline
            self.bar.stop()

    def update(self, step: int, fraction: float, stats: dict[str, float]) -> None:
        info = (
            f"step {step} | loss {stats['loss']:.3f} | lr {stats['lr']:.1e} | "
            f"{stats['tgt_tok_s']:,.0f} tgt tok/s"
        )
        if self.plain:
            self.console.print(f"{fraction:4.0%} {info}", highlight=False)
        self.bar.start()  # no-op once started
        self.bar.update(self.task, completed=int(fraction * STEPS), info=info)


def print_train_summary(console: Console, result) -> None:
    """A line on how training ended."""
    best = f"{result.best_bleu:.2f}" if result.best_bleu is not None else "n/a"
    console.print(
        f"trained {result.run_dir} to step {result.step}; best dev BLEU {best}", highlight=False
    )
    if result.test is not None:
        console.print(f"test: {result.test['bleu_detail']}", highlight=False)
        console.print(f"signature: {result.test['bleu_signature']}", highlight=False)
    if result.samples:
        table = Table(title="sample test translations", show_lines=True)
        for name in ("source", "reference", "tfcli"):
            table.add_column(name, overflow="fold")
        for row in result.samples:
            table.add_row(*row)
        console.print(table)


def scores_table(scores) -> Table:
    """BLEU and chrF with their sacrebleu signatures."""
    table = Table(title=f"{scores.sentences} sentences")
    table.add_column("metric")
    table.add_column("score", justify="right")
    table.add_column("signature")
    table.add_row("BLEU", f"{scores.bleu:.2f}", scores.bleu_signature)
    table.add_row("chrF", f"{scores.chrf:.2f}", scores.chrf_signature)
    return table
