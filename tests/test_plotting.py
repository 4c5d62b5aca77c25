"""`tfcli plot`: training curves from metrics.jsonl, in the terminal and as an image."""

from __future__ import annotations

import subprocess
import sys

import pytest
from logged_run import TRAIN, VALID, write_logged_run
from typer.testing import CliRunner

from tfcli.cli import app
from tfcli.plotting import read_panels


def invoke(*args):
    return CliRunner().invoke(app, ["plot", *map(str, args)])


@pytest.fixture(scope="module")
def logged(tmp_path_factory, overfit, tokenizer):
    return write_logged_run(tmp_path_factory.mktemp("logged"), overfit.model, tokenizer)


def _points(curve):
    return list(zip(curve.steps, curve.values))


def test_curves_come_from_the_train_and_validation_records(logged):
    loss, bleu, lr = read_panels(logged.path)
    assert [p.title for p in (loss, bleu, lr)] == ["loss", "dev BLEU", "learning rate"]
    train, dev = loss.curves
    assert _points(train) == [(r["step"], r["train_loss"]) for r in TRAIN]
    assert _points(dev) == [(r["step"], r["dev_loss"]) for r in VALID]
    assert _points(bleu.curves[0]) == [(r["step"], r["dev_bleu"]) for r in VALID]
    assert _points(lr.curves[0]) == [(r["step"], r["lr"]) for r in TRAIN]


def test_a_run_written_before_train_records_plots_the_validations_train_loss(
    tmp_path, overfit, tokenizer
):
    old = write_logged_run(tmp_path / "old", overfit.model, tokenizer, kinds=False)
    panels = read_panels(old.path)
    assert [p.title for p in panels] == ["loss", "dev BLEU"]  # no learning rate recorded
    assert _points(panels[0].curves[0]) == [(r["step"], r["train_loss"]) for r in VALID]


def test_plot_draws_every_panel_in_the_terminal(logged):
    result = invoke(logged.path, "--width", 72, "--height", 10)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "\x1b[" not in result.stdout  # not a terminal: no colour codes
    assert max(map(len, lines)) <= 72
    assert 3 * 10 <= len(lines) <= 3 * 10 + 1  # three panels of 10 lines, the x label
    titles = [
        line.strip() for line in lines if line.strip() in ("loss", "dev BLEU", "learning rate")
    ]
    assert titles == ["loss", "dev BLEU", "learning rate"]
    assert "train" in result.stdout and "dev" in result.stdout and lines[-1].strip() == "update"
    assert lines[-2].split() == ["10", "20", "30", "40"]  # the x axis: round update numbers


def test_plot_out_writes_an_image(logged, tmp_path):
    out = tmp_path / "curves.png"
    result = invoke(logged.path, "--out", out)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_errors_are_one_line(tmp_path, logged):
    result = invoke(tmp_path)
    assert result.exit_code == 1
    assert (
        result.stderr
        == f"error: {tmp_path / 'metrics.jsonl'}: no metrics log (the run has not validated yet)\n"
    )
    result = invoke(logged.path, "--out", tmp_path / "curves.nope")
    assert result.exit_code == 1 and result.stderr.startswith(
        f"error: {tmp_path / 'curves.nope'}: cannot write the plot"
    )
    assert len(result.stderr.splitlines()) == 1


def test_plot_out_without_matplotlib_names_the_extra(logged, tmp_path):
    script = (
        "import sys\n"
        "sys.modules['matplotlib'] = None  # as if it were not installed\n"
        "from tfcli.cli import app\n"
        "app(prog_name='tfcli')\n"
    )
    out = tmp_path / "curves.png"
    proc = subprocess.run(
        [sys.executable, "-c", script, "plot", str(logged.path), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stderr == "error: --out needs matplotlib: pip install 'tfcli[plot]'\n"
    assert not out.exists()
