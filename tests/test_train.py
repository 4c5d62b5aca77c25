"""The training loop: schedule, resuming, determinism, checkpoints, stopping rules, DDP.

Every run trains a width-32, 1+1 layer model for a few steps on a 300-line slice of the
bundled corpus, with a sentencepiece model trained once for the module.
"""

from __future__ import annotations

import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from train_runs import assert_same_training_state, assert_same_weights, kind, records, steps_of

from tfcli.checkpoint import load_checkpoint
from tfcli.config import load_config
from tfcli.data.batching import batch_by_tokens
from tfcli.data.pairs import make_examples
from tfcli.data.text import read_parallel
from tfcli.data.tokenizer import Tokenizer
from tfcli.errors import ConfigError
from tfcli.run_dir import RunDir
from tfcli.training.optim import learning_rate
from tfcli.training.trainer import train

# --- schedule ---------------------------------------------------------------------------------

PEAK, WARMUP = 1e-3, 4


def test_learning_rate_warms_up_linearly_to_the_peak():
    # learning_rate(step) is the rate of update number step + 1
    rates = [learning_rate(step, PEAK, WARMUP, "inverse_sqrt") for step in range(WARMUP)]
    assert rates == pytest.approx([PEAK * n / WARMUP for n in range(1, WARMUP + 1)])


def test_learning_rate_then_decays_with_the_inverse_square_root():
    for n in (WARMUP, WARMUP + 1, 9, 16, 400):
        rate = learning_rate(n - 1, PEAK, WARMUP, "inverse_sqrt")
        assert rate == pytest.approx(PEAK * math.sqrt(WARMUP / n))
    curve = [learning_rate(step, PEAK, WARMUP, "inverse_sqrt") for step in range(200)]
    assert max(curve) == pytest.approx(PEAK)
    assert curve.index(max(curve)) == WARMUP - 1


def test_constant_schedule_holds_the_peak_after_warmup():
    warm = [learning_rate(step, PEAK, WARMUP, "constant") for step in range(WARMUP)]
    assert warm == pytest.approx([PEAK * n / WARMUP for n in range(1, WARMUP + 1)])
    assert all(learning_rate(step, PEAK, WARMUP, "constant") == PEAK for step in range(4, 500))
    assert learning_rate(0, PEAK, 0, "constant") == PEAK


# --- training runs ----------------------------------------------------------------------------


@pytest.fixture
def train_log(caplog):
    caplog.set_level(logging.INFO, logger="tfcli")
    return caplog


def test_metrics_are_strict_json(tmp_path, make_cfg):
    # a validation before the first logged training loss (valid_every < log_every)
    run = tmp_path / "run"
    train(make_cfg("train.max_steps=2", "train.valid_every=1", "train.log_every=5"), run)
    assert [r["train_loss"] for r in records(run)] == [None, None]  # records() is strict


# 8 batches an epoch: the resumed part crosses into the second epoch
RESUME = ("train.valid_every=3", "train.batch_tokens=1500")


def test_resume_continues_from_the_last_checkpoint(tmp_path, make_cfg):
    run = tmp_path / "resumed"
    train(make_cfg(*RESUME, "train.max_steps=6"), run)
    first = load_checkpoint(RunDir(run).last)
    assert first.step == 6
    assert first.state["optimizer"]["state"]  # Adam's moments are saved
    result = train(make_cfg(*RESUME, "train.max_steps=10"), run)
    assert result.step == 10
    assert steps_of(run) == [3, 6, 9, 10]
    assert load_checkpoint(RunDir(run).last).step == 10


def test_resumed_training_equals_uninterrupted_training(tmp_path, make_cfg):
    resumed, straight = tmp_path / "resumed", tmp_path / "straight"
    train(make_cfg(*RESUME, "train.max_steps=6"), resumed)
    train(make_cfg(*RESUME, "train.max_steps=10"), resumed)
    train(make_cfg(*RESUME, "train.max_steps=10"), straight)
    # the optimizer state was restored, not started afresh
    assert_same_training_state(RunDir(resumed).last, RunDir(straight).last)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("model.d_ff=128", "model.d_ff is 64 in this run, 128 now"),
        ("tokenizer.vocab_size=300", "tokenizer.vocab_size is 500 in this run, 300 now"),
        ("train.batch_tokens=1000", "train.batch_tokens is 600 in this run, 1000 now"),
        ("train.seed=2", "train.seed is 1 in this run, 2 now"),
        ("train.accumulate=2", "train.accumulate is 1 in this run, 2 now"),
        ("data.max_len=32", "data.max_len is 64 in this run, 32 now"),
    ],
)
def test_resume_with_a_changed_model_tokenizer_data_or_batches_is_refused(
    tmp_path, make_cfg, change, message
):
    run = tmp_path / "run"
    train(make_cfg("train.max_steps=2"), run)
    with pytest.raises(ConfigError, match=message):
        train(make_cfg("train.max_steps=4", change), run)
    assert load_checkpoint(RunDir(run).last).step == 2


def test_refused_resume_leaves_the_run_config_alone(tmp_path, make_cfg):
    run = tmp_path / "run"
    train(make_cfg("train.max_steps=2"), run)
    with pytest.raises(ConfigError):
        train(make_cfg("train.max_steps=4", "model.d_ff=128"), run)
    # config.yaml still describes the checkpoints in the run directory
    assert load_config(run / "config.yaml").model == load_checkpoint(RunDir(run).last).config.model


def test_same_seed_gives_the_same_weights(tmp_path, make_cfg):
    cfg = make_cfg("train.max_steps=3", "model.dropout=0.1", "train.valid_every=100")
    train(cfg, tmp_path / "a")
    train(cfg, tmp_path / "b")
    assert_same_weights(RunDir(tmp_path / "a").last, RunDir(tmp_path / "b").last)


def test_keep_best_keeps_the_best_checkpoints(tmp_path, make_cfg):
    run = tmp_path / "run"
    train(make_cfg("train.keep_best=2", "train.valid_every=2", "train.max_steps=10"), run)
    bleu = {r["step"]: r["dev_bleu"] for r in records(run) if kind(r) == "valid"}
    assert sorted(bleu) == [2, 4, 6, 8, 10]
    kept = {int(p.stem.removeprefix("checkpoint_step")) for p in run.glob("checkpoint_step*.pt")}
    assert len(kept) == 2
    assert min(bleu[s] for s in kept) >= max(bleu[s] for s in set(bleu) - kept)
    for step in kept:
        assert load_checkpoint(run / f"checkpoint_step{step}.pt").step == step
    best = load_checkpoint(RunDir(run).best).step
    assert bleu[best] == max(bleu.values())


def test_patience_stops_when_dev_bleu_does_not_improve(tmp_path, make_cfg, train_log):
    # lr 0: the weights never change, so no validation after the first one is better
    cfg = make_cfg("train.lr=0", "train.patience=1", "train.valid_every=2", "train.max_steps=20")
    result = train(cfg, tmp_path / "run")
    assert result.step == 4
    assert steps_of(tmp_path / "run") == [2, 4]
    assert "train.patience" in train_log.text


def test_max_minutes_stops_training(tmp_path, make_cfg, train_log):
    cfg = make_cfg("train.max_minutes=0.001", "train.max_steps=100000", "train.valid_every=1000")
    result = train(cfg, tmp_path / "run")
    assert 1 <= result.step < 100000
    assert "train.max_minutes" in train_log.text
    assert load_checkpoint(RunDir(tmp_path / "run").last).step == result.step


def test_length_filtering_is_reported(tmp_path, make_cfg, spm_model, tiny_corpus, train_log):
    train(make_cfg("data.max_len=16", "train.max_steps=1"), tmp_path / "run")
    tok = Tokenizer.load(spm_model)
    src, tgt = read_parallel(tiny_corpus / "train.de", tiny_corpus / "train.en")
    # a pair's length counts its EOS token, as in training
    lengths = [max(len(s), len(t)) + 1 for s, t in zip(tok.encode(src), tok.encode(tgt)) if s and t]
    too_long = sum(n > 16 for n in lengths)
    assert too_long > 0
    assert f"{too_long} too long" in train_log.text


def test_gradient_accumulation_makes_one_update_per_group(
    tmp_path, make_cfg, spm_model, tiny_corpus
):
    cfg = make_cfg(
        "train.accumulate=2",
        "train.max_epochs=1",
        "train.max_steps=1000",
        "train.batch_tokens=1000",
        "train.valid_every=1000",
    )
    tok = Tokenizer.load(spm_model)
    src, tgt = read_parallel(tiny_corpus / "train.de", tiny_corpus / "train.en")
    examples, _ = make_examples(src, tgt, tok, tok, cfg.data.max_len)
    batches = len(batch_by_tokens(examples, cfg.train.batch_tokens))
    assert batches >= 4
    result = train(cfg, tmp_path / "run")
    assert result.step == batches // 2


# --- torchrun: DistributedDataParallel on the CPU (gloo) ---------------------------------------


def torchrun(tmp_path: Path, config: Path, *overrides: str, timeout: float = 60):
    """`torchrun --nproc_per_node 2 -m tfcli train` into tmp_path/run -> (exit code, stdout, stderr).

    On a timeout torchrun gets SIGTERM, which it passes on to its worker processes.
    """
    sets = [arg for o in overrides for arg in ("--set", o)]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone"]
    cmd += ["-m", "tfcli", "train", str(config), "-o", str(tmp_path / "run"), "--quiet", *sets]
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        proc = subprocess.Popen(
            cmd, stdout=stdout, stderr=stderr, env=dict(os.environ, OMP_NUM_THREADS="1")
        )
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            pytest.fail(f"torchrun did not finish in {timeout} s: its processes wait on each other")
    return proc.returncode, out.read_text(), err.read_text()


DDP = ("train.batch_tokens=1500", "train.valid_every=3", f"train.max_steps={6}")


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory, tiny_config, spm_model) -> tuple[Path, str]:
    """A torchrun run of two processes with dropout 0.1 and the test set: (run, stdout)."""
    tmp = tmp_path_factory.mktemp("ddp")
    rc, out, err = torchrun(
        tmp, tiny_config, f"tokenizer.model={spm_model}", "model.dropout=0.1", *DDP
    )
    assert rc == 0, err
    return tmp / "run", out


def test_torchrun_trains_with_two_processes(ddp_run):
    run, out = ddp_run
    assert load_checkpoint(RunDir(run).last).step == 6
    assert steps_of(run) == [3, 6]  # rank 0 alone validates and writes
    assert steps_of(run, "test") == [6]
    assert out.count("test BLEU") == 1
    assert not list(run.glob(".*.tmp*"))


def test_torchrun_processes_draw_their_own_dropout_and_resume_bitwise(
    tmp_path, ddp_run, tiny_config, spm_model
):
    sets = (f"tokenizer.model={spm_model}", "model.dropout=0.1", *DDP, "data.test=null")
    rc, _, err = torchrun(tmp_path, tiny_config, *sets, "train.max_steps=3")
    assert rc == 0, err
    rc, _, err = torchrun(tmp_path, tiny_config, *sets)  # every process loads the checkpoint
    assert rc == 0, err
    assert_same_training_state(RunDir(tmp_path / "run").last, RunDir(ddp_run[0]).last)
    ranks = load_checkpoint(RunDir(tmp_path / "run").last).state["ranks"]
    assert len(ranks) == 2 and not torch.equal(ranks[0]["rng"]["torch"], ranks[1]["rng"]["torch"])


def test_torchrun_equals_one_process_with_accumulate_2(
    tmp_path, tiny_config, spm_model, tiny_corpus
):
    # the loss is normalised by the target tokens of both processes' batches, so two processes
    # make the update one process makes over the same two batches; an odd number of batches
    # cannot be split evenly: the last one is left out by both, the processes agree on the end
    tok = Tokenizer.load(spm_model)
    src, tgt = read_parallel(tiny_corpus / "train.de", tiny_corpus / "train.en")
    examples, _ = make_examples(src, tgt, tok, tok, load_config(tiny_config).data.max_len)
    sizes = {n: len(batch_by_tokens(examples, n)) for n in range(1600, 3200, 100)}
    batch_tokens, batches = next((n, b) for n, b in sizes.items() if b % 2)
    sets = [f"tokenizer.model={spm_model}", "data.test=null", f"train.batch_tokens={batch_tokens}"]
    sets += ["train.max_epochs=1", "train.max_steps=100", "train.valid_every=2"]
    rc, _, err = torchrun(tmp_path, tiny_config, *sets, timeout=30)
    assert rc == 0, err
    one = tmp_path / "one"
    train(load_config(tiny_config, [*sets, "train.accumulate=2"]), one)
    a, b = load_checkpoint(RunDir(tmp_path / "run").last), load_checkpoint(RunDir(one).last)
    assert a.step == b.step == batches // 2
    for key in b.model:  # float tolerance: the sum of two gradients in another order
        torch.testing.assert_close(a.model[key], b.model[key], rtol=1e-5, atol=1e-7)
    dev_a = [r["dev_loss"] for r in records(tmp_path / "run") if kind(r) == "valid"]
    assert dev_a == pytest.approx([r["dev_loss"] for r in records(one) if kind(r) == "valid"])


def test_torchrun_processes_stop_together(tmp_path, tiny_config, spm_model):
    # rank 0 decides early stopping (it alone validates); the other process must stop too
    run = tmp_path / "run"
    rc, _, err = torchrun(
        tmp_path,
        tiny_config,
        "train.lr=0",
        "train.patience=1",
        "train.valid_every=2",
        "train.max_steps=20",
        "data.test=null",
        f"tokenizer.model={spm_model}",
        timeout=30,
    )
    assert rc == 0, err
    assert load_checkpoint(RunDir(run).last).step == 4
