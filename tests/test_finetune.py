"""Fine-tuning (`train.init_from`): a new run starts from a trained model's weights and keeps its
tokenizer and shape; the optimizer starts afresh unless `train.init_optimizer` continues it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from train_runs import kind, records
from typer.testing import CliRunner

from tfcli.checkpoint import load_checkpoint
from tfcli.cli import app
from tfcli.config import load_config
from tfcli.errors import ConfigError
from tfcli.run_dir import RunDir
from tfcli.training.optim import learning_rate
from tfcli.training.trainer import train

DATA = Path(__file__).resolve().parents[1] / "data" / "de-en"
STEPS = ("train.batch_tokens=1500", "train.log_every=1")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_config, spm_model) -> Path:
    """A tiny model trained for 40 updates on the first corpus."""
    run = tmp_path_factory.mktemp("trained") / "run"
    cfg = load_config(tiny_config, [f"tokenizer.model={spm_model}", "data.test=null", *STEPS])
    train(cfg, run)
    return run


@pytest.fixture(scope="module")
def second_corpus(tmp_path_factory) -> Path:
    """Other sentences of the bundled corpus: 300 training pairs, 40 dev pairs."""
    root = tmp_path_factory.mktemp("second")
    for split, lines in (("train", slice(5000, 5300)), ("dev", slice(500, 540))):
        for lang in ("de", "en"):
            text = (DATA / f"{split}.{lang}").read_text(encoding="utf-8").splitlines()[lines]
            (root / f"{split}.{lang}").write_text("\n".join(text) + "\n", encoding="utf-8")
    return root


@pytest.fixture
def second_cfg(make_cfg, second_corpus):
    """second_cfg(*overrides): 10 updates on the second corpus."""
    data = [f"data.train={second_corpus / 'train'}", f"data.dev={second_corpus / 'dev'}"]
    return lambda *o: make_cfg(*data, *STEPS, "train.max_steps=10", "train.valid_every=10", *o)


def last_dev_loss(run: Path) -> float:
    return [r["dev_loss"] for r in records(run) if kind(r) == "valid"][-1]


def test_fine_tuning_reaches_a_lower_dev_loss_than_training_from_scratch(
    tmp_path, trained, second_cfg, caplog
):
    caplog.set_level(logging.INFO, logger="tfcli")
    tuned = tmp_path / "tuned"
    train(second_cfg(f"train.init_from={trained}"), tuned)
    train(second_cfg(), tmp_path / "scratch")
    assert last_dev_loss(tuned) < last_dev_loss(tmp_path / "scratch") - 0.3
    assert RunDir(tuned).shared_spm.read_bytes() == RunDir(trained).shared_spm.read_bytes()
    assert f"fine-tuning from {RunDir(trained).best}" in caplog.text
    assert "% unknown pieces in the source, " in caplog.text  # the kept tokenizer's coverage
    state = load_checkpoint(RunDir(tuned).last).state
    assert all(int(s["step"]) == 10 for s in state["optimizer"]["state"].values())  # afresh
    lr = [r["lr"] for r in records(tuned) if kind(r) == "train"]
    cfg = second_cfg().train
    assert lr == [learning_rate(s, cfg.lr, cfg.warmup_steps, cfg.lr_schedule) for s in range(10)]


def test_init_optimizer_continues_the_optimizer_and_its_schedule(tmp_path, trained, second_cfg):
    tuned = tmp_path / "tuned"
    train(second_cfg(f"train.init_from={trained}", "train.init_optimizer=true"), tuned)
    state = load_checkpoint(RunDir(tuned).last).state
    assert all(int(s["step"]) == 50 for s in state["optimizer"]["state"].values())  # 40 + 10
    lr = [r["lr"] for r in records(tuned) if kind(r) == "train"]
    cfg = second_cfg().train
    assert lr == [
        learning_rate(s, cfg.lr, cfg.warmup_steps, cfg.lr_schedule) for s in range(40, 50)
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("model.d_ff=128", "model.d_ff: 128 here, 64 in "),
        ("tokenizer.type=bpe", "tokenizer.type: "),
    ],
)
def test_fine_tuning_keeps_the_model_shape_and_tokenizer(
    tmp_path, trained, second_cfg, change, message
):
    with pytest.raises(ConfigError, match=f"^{message}.*keeps the model and tokenizer"):
        train(second_cfg(f"train.init_from={trained}", change), tmp_path / "tuned")


def test_fine_tuning_refuses_another_tokenizer_file(tmp_path, trained, second_cfg, corpus):
    from tfcli.data.tokenizer import train_tokenizer

    other = tmp_path / "other.model"
    train_tokenizer(corpus[0] + corpus[1]).save(other)
    with pytest.raises(ConfigError, match=f"^tokenizer.model: '{other}' here"):
        train(second_cfg(f"train.init_from={trained}", f"tokenizer.model={other}"), tmp_path / "t")


def test_fine_tuning_may_change_dropout(tmp_path, trained, second_cfg):
    result = train(second_cfg(f"train.init_from={trained}", "model.dropout=0.3"), tmp_path / "t")
    assert result.step == 10


def test_init_from_on_the_command_line(tmp_path, trained, tiny_config, spm_model):
    run = tmp_path / "tuned"
    args = ["train", str(tiny_config), "-o", str(run), "--quiet", "--init-from", str(trained)]
    for o in (f"tokenizer.model={spm_model}", "data.test=null", "train.max_steps=2"):
        args += ["--set", o]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert load_config(RunDir(run).config).train.init_from == str(trained)
    args[args.index("--init-from") + 1] = str(tmp_path / "nothing")
    args[args.index("-o") + 1] = str(tmp_path / "other")
    missing = CliRunner().invoke(app, args)
    assert missing.exit_code == 1
    assert missing.stderr.strip() == (
        f"error: train.init_from: {tmp_path / 'nothing'}: no such run directory or checkpoint file"
    )
