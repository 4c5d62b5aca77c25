"""Resuming: bitwise equal to an uninterrupted run, a run directory a crash cannot damage,
damaged checkpoints, config changes, finished runs.

Runs train the tiny model with dropout 0.1 in process; 8 batches an epoch, so a run of 13
updates crosses an epoch boundary. Killing real processes is in test_kill.py.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from train_runs import assert_same_training_state, records, steps_of, without_timings

from tfcli import checkpoint
from tfcli.checkpoint import load_checkpoint, save_checkpoint
from tfcli.config import load_config
from tfcli.errors import CheckpointError, ConfigError, TfcliError
from tfcli.run_dir import RunDir
from tfcli.training import trainer, validation
from tfcli.training.trainer import train

RUN = ("model.dropout=0.1", "train.batch_tokens=1500", "train.valid_every=3")
RUN += ("train.log_every=2", "train.keep_best=2", "train.max_steps=13")


@pytest.fixture
def run_cfg(make_cfg, tiny_corpus):
    """run_cfg(*overrides): the tiny config with dropout, its test set and 13 updates."""
    return lambda *overrides: make_cfg(*RUN, f"data.test={tiny_corpus / 'test'}", *overrides)


@pytest.fixture(scope="module")
def straight(tmp_path_factory, tiny_config, spm_model, tiny_corpus):
    """The uninterrupted run every resumed one is compared with."""
    run = tmp_path_factory.mktemp("straight") / "run"
    base = [f"tokenizer.model={spm_model}", f"data.test={tiny_corpus / 'test'}", *RUN]
    train(load_config(tiny_config, base), run)
    return run


def same_run(run, straight) -> None:
    """`run` ended exactly as `straight`: state, records, kept checkpoints, test output."""
    a, b = RunDir(run), RunDir(straight)
    assert_same_training_state(a.last, b.last)
    assert without_timings(run) == without_timings(straight)
    assert a.step_checkpoints().keys() == b.step_checkpoints().keys()
    assert load_checkpoint(a.best).step == load_checkpoint(b.best).step
    assert a.test_hyp.read_text() == b.test_hyp.read_text()
    assert not list(run.glob(".*.tmp*"))


@pytest.mark.parametrize("first", [5, 8])  # mid-epoch, and at the end of epoch 0
def test_a_stopped_run_resumes_bitwise_with_dropout(tmp_path, run_cfg, straight, first):
    run = tmp_path / "run"
    train(run_cfg(f"train.max_steps={first}"), run)
    result = train(run_cfg(), run)
    assert result.step == 13
    assert_same_training_state(RunDir(run).last, RunDir(straight).last)
    valid = steps_of(run)
    assert valid == sorted(set(valid)) and set(steps_of(straight)) <= set(valid)


def _files(run: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under the run directory (the prepared data's too): contents and time."""
    files = (p for p in run.rglob("*") if p.is_file())
    return {str(p.relative_to(run)): (p.read_bytes(), p.stat().st_mtime_ns) for p in files}


def test_rerunning_a_finished_run_changes_nothing(tmp_path, run_cfg, straight):
    run = tmp_path / "run"
    train(run_cfg(), run)
    before = _files(run)
    before.pop("train.log")  # the run's log says that nothing was done
    result = train(run_cfg(), run)
    assert result.message == (
        "already trained to step 13 (reached train.max_steps (13)); "
        "raise train.max_steps or train.max_minutes to continue"
    )
    after = _files(run)
    after.pop("train.log")
    assert after == before
    assert "already trained to step 13" in RunDir(run).log.read_text()


class Crash(BaseException):
    """Stands for a kill: nothing after it runs (a BaseException, like KeyboardInterrupt)."""


WRITERS = [  # (module, name): every write of a run directory goes through one of these
    (checkpoint, "write_atomic"),
    (trainer, "copy_atomic"),
    (validation, "append_line"),
    (validation, "write_text_atomic"),
]


def count_writes(monkeypatch, crash_at: int | None = None) -> list[str]:
    """Count the run's writes; with `crash_at` = 2k (+1), crash before (after) the k-th."""
    done: list[str] = []
    for module, name in WRITERS:
        real = getattr(module, name)

        def write(*args, real=real, **kwargs):
            point = 2 * len(done)
            done.append(f"{real.__name__} {args[1] if real.__name__ == 'copy_atomic' else args[0]}")
            if crash_at == point:
                raise Crash
            real(*args, **kwargs)
            if crash_at == point + 1:
                raise Crash

        monkeypatch.setattr(module, name, write)
    return done


def crash_points(monkeypatch, tmp_path, run_cfg) -> list[int]:
    """Crash after each kind of write of a validation and of the end of the run."""
    with monkeypatch.context() as m:
        writes = count_writes(m)
        train(run_cfg(), tmp_path / "count")

    def after(name: str) -> int:  # the crash point just after the first write of `name`
        return 2 * next(i for i, w in enumerate(writes) if w.endswith(name)) + 1

    return [
        after("checkpoint_step9.pt") - 2,  # the record of the validation at step 9 is written
        after("checkpoint_step6.pt"),  # a kept checkpoint, not yet the best one
        after("checkpoint_step6.pt") + 2,  # the best one, not yet checkpoint_last.pt
        after("checkpoint_step9.pt") + 2,  # checkpoint_last.pt, step 3 not yet dropped
        after("test.hyp") - 2,  # the last validation is saved: the test set is next
        after("test.hyp") + 2,  # the test record is written, the end is not yet marked
    ]


def test_a_crash_at_any_write_then_a_rerun_ends_as_the_uninterrupted_run(
    tmp_path, monkeypatch, run_cfg, straight
):
    for n, point in enumerate(crash_points(monkeypatch, tmp_path, run_cfg)):
        run = tmp_path / f"run{n}"
        with monkeypatch.context() as m, pytest.raises(Crash):
            count_writes(m, crash_at=point)
            train(run_cfg(), run)
        result = train(run_cfg(), run)
        assert result.step == 13, point
        same_run(run, straight)


def test_a_best_checkpoint_of_lost_work_is_put_back(tmp_path, monkeypatch, run_cfg):
    # a crash after the validation at step 6 wrote checkpoint_best.pt, before checkpoint_last.pt;
    # the rerun stops at step 3 (an allowed change): step 6 is no longer part of the run
    run = RunDir(tmp_path / "run")
    with monkeypatch.context() as m, pytest.raises(Crash):
        best_pt = crash_after(checkpoint.write_atomic, run.best.name, 2)
        m.setattr(checkpoint, "write_atomic", best_pt)
        train(run_cfg("data.test=null"), run.path)
    assert load_checkpoint(run.best).step == 6 and load_checkpoint(run.last).step == 3
    train(run_cfg("data.test=null", "train.max_steps=3"), run.path)
    assert load_checkpoint(run.best).step == 3 and list(run.step_checkpoints()) == [3]


def crash_after(write, name: str, nth: int):
    """`write`, crashing after its `nth` write of a file whose name ends in `name`."""
    seen = []

    def crashing(path, *args, **kwargs):
        write(path, *args, **kwargs)
        seen.extend([path] if str(path).endswith(name) else [])
        if len(seen) == nth:
            raise Crash

    return crashing


def test_a_signal_during_validation_saves_and_the_rerun_validates_first(
    tmp_path, monkeypatch, run_cfg, straight
):
    import os
    import signal

    real = validation.dev_bleu

    def dev_bleu(translator, dev, sentences):
        if len(steps_of(run)) == 2:  # the third validation: step 9
            os.kill(os.getpid(), signal.SIGTERM)
        return real(translator, dev, sentences)

    run = tmp_path / "run"
    with monkeypatch.context() as m, pytest.raises(trainer.TrainingStopped) as stopped:
        m.setattr(validation, "dev_bleu", dev_bleu)
        train(run_cfg(), run)
    assert stopped.value.exit_code == 143 and stopped.value.step == 9
    saved = load_checkpoint(RunDir(run).last)
    assert saved.step == 9 and saved.state["last_validated"] == 6
    assert steps_of(run) == [3, 6]
    train(run_cfg(), run)
    same_run(run, straight)


@pytest.mark.parametrize("damage", ["truncated", "garbled"])
def test_a_damaged_last_checkpoint_falls_back_to_the_newest_that_loads(
    tmp_path, run_cfg, straight, caplog, damage
):
    run = tmp_path / "run"
    train(run_cfg("train.max_steps=11"), run)
    last, newest = RunDir(run).last, max(RunDir(run).step_checkpoints())
    data = bytearray(last.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
    last.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=f"{last}: .*damaged"):
        load_checkpoint(last)
    caplog.set_level(logging.WARNING, logger="tfcli")
    train(run_cfg(), run)
    assert f"resuming from {RunDir(run).step(newest)} (step {newest})" in caplog.text
    assert_same_training_state(RunDir(run).last, RunDir(straight).last)
    kinds = [(r["kind"], r["step"]) for r in records(run)]
    assert len(kinds) == len(set(kinds))  # what the lost checkpoint counted is not repeated


def test_a_run_without_a_loadable_checkpoint_is_refused_unless_overwritten(tmp_path, run_cfg):
    run = tmp_path / "run"
    train(run_cfg("train.max_steps=4", "data.test=null"), run)
    for path in RunDir(run).checkpoints():
        path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="no checkpoint to resume it from .*--overwrite"):
        train(run_cfg("train.max_steps=4"), run)
    for path in RunDir(run).checkpoints():  # a checkpoint deleted by hand is no way out either
        path.unlink()
    with pytest.raises(CheckpointError, match="checkpoint_last.pt is missing.*--overwrite"):
        train(run_cfg("train.max_steps=4"), run)
    result = train(run_cfg("train.max_steps=2", "data.test=null"), run, overwrite=True)
    assert result.step == 2 and steps_of(run) == [2] and steps_of(run, "train") == [2]


def test_allowed_changes_on_resume_are_logged_and_the_first_config_kept(tmp_path, run_cfg, caplog):
    run = RunDir(tmp_path / "run")
    train(run_cfg("train.max_steps=4"), run.path)
    first = run.config.read_text()
    caplog.set_level(logging.INFO, logger="tfcli")
    train(run_cfg("train.max_steps=6", "decode.beam=1"), run.path)
    change = "train.max_steps 4 -> 6, decode.beam 2 -> 1"
    assert change in caplog.text and change in run.log.read_text()
    assert run.original_config.read_text() == first
    assert load_config(run.config).train.max_steps == 6


def test_resuming_with_another_number_of_processes_is_refused(tmp_path, run_cfg):
    run = RunDir(tmp_path / "run")
    train(run_cfg("train.max_steps=3", "data.test=null"), run.path)
    ckpt = load_checkpoint(run.last)
    ckpt.state["world_size"] = 2
    save_checkpoint(run.last, ckpt)
    with pytest.raises(ConfigError, match="trained by 2 processes, 1 now"):
        train(run_cfg("train.max_steps=6"), run.path)


def test_changed_training_files_are_refused_mid_epoch(tmp_path, run_cfg, tiny_corpus):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for lang in ("de", "en"):
        (corpus / f"train.{lang}").write_bytes((tiny_corpus / f"train.{lang}").read_bytes())
    cfg = lambda *o: run_cfg(f"data.train={corpus / 'train'}", "data.test=null", *o)  # noqa: E731
    train(cfg("train.max_steps=5"), tmp_path / "run")
    for lang in ("de", "en"):
        lines = (corpus / f"train.{lang}").read_text().splitlines()
        (corpus / f"train.{lang}").write_text("\n".join(lines[:150]) + "\n")
    with pytest.raises(TfcliError, match=r"epoch 0 now has \d batches per process, 8 when"):
        train(cfg(), tmp_path / "run")


def test_the_grad_scaler_state_survives_a_checkpoint(tmp_path, tokenizer, model_cfg):
    # fp16 training needs CUDA; its GradScaler's state goes through a checkpoint as here
    from tfcli.checkpoint import Checkpoint
    from tfcli.config import Config

    weight = torch.nn.Parameter(torch.ones(2))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=7)
    for factor in (float("inf"), 1.0):  # an overflow halves the scale, then one good step
        scaler.scale((weight * factor).sum()).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad()
    assert scaler.state_dict()["scale"] == 512.0 and scaler.state_dict()["_growth_tracker"] == 1
    state = {"scaler": scaler.state_dict()}
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, Checkpoint({}, Config(model=model_cfg), tokenizer, tokenizer, 1, state))
    again = torch.amp.GradScaler("cpu")
    again.load_state_dict(load_checkpoint(path).state["scaler"])
    assert again.state_dict() == scaler.state_dict()


def test_keep_best_lowered_on_resume_drops_the_worst(tmp_path, run_cfg, caplog):
    run = RunDir(tmp_path / "run")
    train(run_cfg("train.max_steps=9", "data.test=null", "train.keep_best=3"), run.path)
    assert sorted(run.step_checkpoints()) == [3, 6, 9]
    caplog.set_level(logging.INFO, logger="tfcli")
    train(run_cfg("train.max_steps=10", "data.test=null", "train.keep_best=1"), run.path)
    assert caplog.text.count("is not among the kept checkpoints at step 9") == 2  # on resuming
    assert len(run.step_checkpoints()) == 1
    best = load_checkpoint(run.last).state["best"]
    assert [s for _, s in best] == list(run.step_checkpoints())
    assert load_checkpoint(run.best).step == best[0][1]


def test_a_new_start_after_an_early_kill_does_not_keep_a_tokenizer_of_other_settings(
    tmp_path, make_cfg
):
    from tfcli.data.tokenizer import Tokenizer

    run = RunDir(tmp_path / "run")
    train(make_cfg("train.max_steps=1"), run.path)  # the 500-piece model of make_cfg
    for path in [run.metrics, *run.checkpoints()]:  # as if killed before its first checkpoint
        path.unlink()
    train(
        make_cfg("tokenizer.model=null", "tokenizer.vocab_size=300", "train.max_steps=1"), run.path
    )
    assert len(Tokenizer.load(run.shared_spm)) == 300
