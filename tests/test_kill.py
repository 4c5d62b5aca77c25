"""`tfcli train` as a real process, killed and signalled at random moments, then the same
command rerun: it ends bitwise where the uninterrupted run ends.

The run: the tiny model with dropout 0.1, 24 updates over three epochs, a validation every 5,
the test set at the end. Progress is read from the training records of metrics.jsonl (one per
update), so the kills land at random updates, in validations, checkpoint writes and the test.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from train_runs import assert_same_training_state, records, without_timings

from tfcli.checkpoint import load_checkpoint
from tfcli.config import load_config
from tfcli.run_dir import RunDir
from tfcli.training.signals import DUPLICATE, StopSignals
from tfcli.training.trainer import train

STEPS = 24
KILLS = int(os.environ.get("TFCLI_TEST_KILLS", "3"))  # SIGKILLs; the full check: 20
RUN = ("model.dropout=0.1", "train.batch_tokens=1500", "train.valid_every=5")
RUN += ("train.log_every=1", "train.keep_best=2", f"train.max_steps={STEPS}")


@pytest.fixture(scope="module")
def overrides(spm_model, tiny_corpus) -> list[str]:
    return [f"tokenizer.model={spm_model}", f"data.test={tiny_corpus / 'test'}", *RUN]


@pytest.fixture(scope="module")
def straight(tmp_path_factory, tiny_config, overrides) -> Path:
    run = tmp_path_factory.mktemp("straight") / "run"
    train(load_config(tiny_config, overrides), run)
    return run


class Training:
    """`python -m tfcli train CONFIG -o RUN --quiet --set ...`, single-threaded."""

    def __init__(self, config: Path, run: Path, overrides: list[str]) -> None:
        sets = [arg for o in overrides for arg in ("--set", o)]
        self.cmd = [sys.executable, "-m", "tfcli", "train", str(config), "-o", str(run), "--quiet"]
        self.cmd += sets
        self.run = run

    def start(self) -> subprocess.Popen:
        env = dict(os.environ, OMP_NUM_THREADS="1")
        pipe = subprocess.PIPE
        return subprocess.Popen(self.cmd, stdout=pipe, stderr=pipe, text=True, env=env)

    def step(self) -> int:
        """The last step in the metrics log (0 before the first)."""
        try:
            lines = (self.run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return 0
        steps = [0]
        for line in lines:
            with contextlib.suppress(ValueError, KeyError):  # a line being written
                steps.append(json.loads(line)["step"])
        return max(steps)

    def starts(self) -> int:
        """How often training started here: each start logs where it starts to train.log once,
        after it has cut the metrics log back to its checkpoint."""
        log = self.run / "train.log"
        return log.read_text(encoding="utf-8").count(" from step ") if log.exists() else 0

    def wait_for(self, proc: subprocess.Popen, step: int, timeout: float = 60) -> None:
        """Until this start of `proc` has logged `step`, or the process ends."""
        deadline, starts = time.monotonic() + timeout, self.starts()
        while proc.poll() is None and (self.starts() == starts or self.step() < step):
            assert time.monotonic() < deadline, f"no step {step} in {timeout} s"
            time.sleep(0.005)


def assert_ends_as(run: Path, straight: Path) -> None:
    a, b = RunDir(run), RunDir(straight)
    assert_same_training_state(a.last, b.last)
    assert without_timings(run) == without_timings(straight)  # no record twice, none lost
    assert a.step_checkpoints().keys() == b.step_checkpoints().keys()
    assert load_checkpoint(a.best).step == load_checkpoint(b.best).step
    assert a.test_hyp.read_text() == b.test_hyp.read_text()
    assert not list(run.glob(".*.tmp*"))
    for path in a.checkpoints():
        load_checkpoint(path)  # every .pt loads


def test_kills_and_signals_at_random_moments_then_the_same_command_ends_bitwise(
    tmp_path, tiny_config, overrides, straight
):
    rng = random.Random(13)
    training = Training(tiny_config, tmp_path / "run", overrides)
    # SIGTERM early (before the first validation), SIGINT later, SIGKILLs spread over the run:
    # the i-th of n stops lands a random moment after a random update of the i-th n-th of the
    # run (in an update, a validation, a checkpoint write), the last one in the end (the last
    # validation, the test set)
    stops = [signal.SIGTERM, signal.SIGKILL, signal.SIGINT] + [signal.SIGKILL] * (KILLS - 1)
    n = len(stops) - 1
    for i, signum in enumerate(stops):
        last = RunDir(training.run).last
        done = load_checkpoint(last).step if last.exists() else 0
        proc = training.start()
        lo, hi = 1 + i * (STEPS - 1) // n, max(1, (i + 1) * (STEPS - 1) // n)
        if signum == signal.SIGTERM:
            lo, hi = 1, 4
        if i == n:
            lo = hi = STEPS
        training.wait_for(proc, max(rng.randint(lo, hi), done + 1))
        time.sleep(rng.uniform(0, 0.3 if i == n else 0.05))
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
        if signum != signal.SIGKILL:  # these save, say so and exit 143 / 130
            assert proc.returncode == 128 + signum, err
            step = load_checkpoint(RunDir(training.run).last).step
            assert (
                err.splitlines()[-1] == f"stopped at step {step}; rerun the same command to resume"
            )
            assert step > done
    proc = training.start()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert out.startswith("test BLEU ") or "already trained to step 24" in err
    records(training.run)  # strict JSON
    assert_ends_as(training.run, straight)


def test_a_second_sigint_stops_at_once():
    before = signal.getsignal(signal.SIGINT)
    with StopSignals() as signals:
        os.kill(os.getpid(), signal.SIGINT)
        assert signals.received == signal.SIGINT  # the first asks to stop after the update
        os.kill(os.getpid(), signal.SIGINT)  # the same Ctrl-C, passed on by a launcher
        time.sleep(DUPLICATE)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)  # the handler runs before this ends
    assert signal.getsignal(signal.SIGINT) is before
