"""A loss that goes NaN or infinite: the update is skipped, ten in a row stop training with a
clear message, and no non-finite number reaches a checkpoint or the metrics log."""

from __future__ import annotations

import logging

import pytest
import torch
from train_runs import records
from typer.testing import CliRunner

from tfcli.checkpoint import load_checkpoint
from tfcli.cli import app
from tfcli.errors import TfcliError
from tfcli.model.loss import LabelSmoothedLoss
from tfcli.run_dir import RunDir
from tfcli.training.trainer import train
from tfcli.training.update import Updater

RUN = ("model.dropout=0.1", "train.batch_tokens=1500", "train.valid_every=3")


def nan_from(monkeypatch, calls: set[int] | None = None, first: int | None = None) -> dict:
    """Make the training loss NaN at these forward calls (1-based), or from `first` on; the
    weights at each poisoned call are kept in the returned dict under the call number."""
    real = LabelSmoothedLoss.forward
    seen = {"calls": 0}

    def forward(self, src, tgt_in, tgt_out):
        loss = real(self, src, tgt_in, tgt_out)
        if not self.model.training:  # dev loss
            return loss
        seen["calls"] += 1
        n = seen["calls"]
        seen[n] = [p.detach().clone() for p in self.model.parameters()]
        poisoned = (calls is not None and n in calls) or (first is not None and n >= first)
        return loss * float("nan") if poisoned else loss

    monkeypatch.setattr(LabelSmoothedLoss, "forward", forward)
    return seen


def all_finite(path) -> bool:
    weights = load_checkpoint(path).model.values()
    return all(bool(w.isfinite().all()) for w in weights if w.is_floating_point())


def test_a_non_finite_update_is_skipped_and_changes_no_weight(
    tmp_path, monkeypatch, make_cfg, caplog
):
    seen = nan_from(monkeypatch, calls={4})
    caplog.set_level(logging.WARNING, logger="tfcli")
    result = train(make_cfg(*RUN, "train.max_steps=6"), tmp_path / "run")
    assert result.step == 6 and seen["calls"] == 7  # 7 forward passes, 6 updates
    for before, after in zip(seen[4], seen[5]):  # the weights the skipped update left
        assert torch.equal(before, after)
    state = load_checkpoint(RunDir(tmp_path / "run").last).state["optimizer"]["state"]
    assert all(int(s["step"]) == 6 for s in state.values())  # Adam stepped 6 times
    assert "update 4: the loss or its gradient is not finite; skipped (1 in a row)" in caplog.text


def test_ten_non_finite_updates_in_a_row_stop_and_keep_the_last_good_checkpoint(
    tmp_path, monkeypatch, make_cfg
):
    run = RunDir(tmp_path / "run")
    nan_from(monkeypatch, first=8)
    with pytest.raises(TfcliError) as e:
        train(make_cfg(*RUN, "train.max_steps=40"), run.path)
    assert str(e.value) == (
        "update 8: the loss was not finite in 10 updates in a row; training stopped: lower "
        "train.lr (now 0.003) or set train.clip_norm (1.0, say); the last good checkpoint, "
        f"{run.last} (step 6), is kept"
    )
    assert load_checkpoint(run.last).step == 6 and all_finite(run.last)
    records(run.path)  # strict JSON


def test_non_finite_weights_are_never_written(tmp_path, monkeypatch, make_cfg):
    # an optimizer step could overflow finite gradients into inf weights: the save refuses them
    real = Updater._step

    def step(self, total):
        applied = real(self, total)
        if self.optimizer.state and int(next(iter(self.optimizer.state.values()))["step"]) == 6:
            with torch.no_grad():
                next(self.model.parameters()).fill_(float("inf"))
        return applied

    monkeypatch.setattr(Updater, "_step", step)
    run = RunDir(tmp_path / "run")
    with pytest.raises(TfcliError, match="step 6: the weights are not finite; training stopped"):
        train(make_cfg(*RUN, "train.max_steps=40"), run.path)
    assert load_checkpoint(run.last).step == 3 and all_finite(run.last)
    assert not list(run.path.glob(".*.tmp*"))
    assert [r["dev_loss"] for r in records(run.path) if r["kind"] == "valid"][-1] is None  # NaN


def test_a_huge_learning_rate_is_one_line_and_nothing_non_finite_on_disk(
    tmp_path, tiny_config, spm_model
):
    run = tmp_path / "run"
    args = ["train", str(tiny_config), "-o", str(run), "--quiet"]
    for o in (f"tokenizer.model={spm_model}", "train.lr=1e30", "train.valid_every=1", *RUN[:2]):
        args += ["--set", o]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in result.output
    assert "the loss was not finite in 10 updates in a row" in errors[0]
    assert "lower train.lr (now 1e+30)" in errors[0]
    for path in RunDir(run).checkpoints():
        assert all_finite(path), path
    if RunDir(run).metrics.exists():
        records(run)  # strict JSON: no NaN
