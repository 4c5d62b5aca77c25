"""Checkpoints: round trip, atomic writes, refusing files that are not plain data, averaging."""

from __future__ import annotations

import dataclasses
import io
import os
import pickle
import random
import zipfile

import pytest
import torch

from tfcli.checkpoint import (
    Checkpoint,
    average_weights,
    build_model,
    find_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from tfcli.config import Config
from tfcli.errors import CheckpointError
from tfcli.model.transformer import Transformer
from tfcli.run_dir import RunDir


@pytest.fixture(scope="module")
def config(model_cfg) -> Config:
    return Config(model=model_cfg)


def make_checkpoint(config: Config, tokenizer, seed: int = 0, step: int = 10) -> Checkpoint:
    torch.manual_seed(seed)
    model = Transformer(config.model, len(tokenizer), len(tokenizer))
    return Checkpoint(model.state_dict(), config, tokenizer, tokenizer, step, {"epoch": 2})


def run_payload(marker: str) -> None:
    """What a malicious checkpoint would run on loading: leave a marker file behind."""
    with open(marker, "w") as f:
        f.write("ran")


class Malicious:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (run_payload, (self.marker,))


def test_round_trip(tmp_path, config, tokenizer, random_src):
    ckpt = make_checkpoint(config, tokenizer)
    path = RunDir(tmp_path).last
    save_checkpoint(path, ckpt)
    loaded = load_checkpoint(path)
    assert loaded.config == config
    assert loaded.step == 10 and loaded.state == {"epoch": 2}
    assert loaded.src_tokenizer.model_bytes == tokenizer.model_bytes
    assert loaded.tgt_tokenizer.model_bytes == tokenizer.model_bytes
    assert load_checkpoint(path, with_state=False).state == {}

    original = Transformer(config.model, len(tokenizer), len(tokenizer))
    original.load_state_dict(ckpt.model)
    original.eval()
    model = build_model(loaded)
    assert not model.training
    src = random_src([5, 2], vocab=len(tokenizer))
    tgt = torch.tensor([[2, 7, 8], [2, 9, 4]])
    with torch.no_grad():
        assert torch.equal(model(src, tgt), original(src, tgt))


def test_save_is_atomic_and_overwrites(tmp_path, config, tokenizer):
    path = RunDir(tmp_path).best
    save_checkpoint(path, make_checkpoint(config, tokenizer, seed=0, step=1))
    save_checkpoint(path, make_checkpoint(config, tokenizer, seed=1, step=2))
    assert os.listdir(tmp_path) == [
        RunDir(tmp_path).best.name
    ]  # no temporary file left, hidden or not
    assert load_checkpoint(path).step == 2


def test_failed_save_leaves_previous_file_intact(tmp_path, config, tokenizer):
    path = RunDir(tmp_path).last
    save_checkpoint(path, make_checkpoint(config, tokenizer, step=1))
    bad = make_checkpoint(config, tokenizer, step=2)
    bad.state = {"not plain data": lambda: None}  # torch.save cannot pickle a lambda
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        save_checkpoint(path, bad)
    assert os.listdir(tmp_path) == [RunDir(tmp_path).last.name]
    assert load_checkpoint(path).step == 1


@pytest.mark.parametrize("how", ["pickle", "torch.save"])
def test_malicious_pickle_is_refused_without_running(tmp_path, how):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    payload = {"format": "tfcli-checkpoint-1", "model": Malicious(str(marker))}
    if how == "pickle":
        path.write_bytes(pickle.dumps(payload, protocol=2))
    else:
        torch.save(payload, path)
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_checkpoint(path)
    assert not marker.exists()
    # The file is dangerous indeed: an unrestricted unpickler runs the payload.
    if how == "pickle":
        pickle.loads(path.read_bytes())
    else:
        torch.load(path, weights_only=False)
    assert marker.exists()


def _zip_bytes() -> bytes:
    """A zip archive (the container torch.save writes) that holds no pickle."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a.txt", "not a checkpoint")
    return buf.getvalue()


NOT_CHECKPOINTS = {
    "empty": b"",
    "text": b"hello world\n",
    "yaml": b"model:\n  d_model: 16\n",
    "random": random.Random(0).randbytes(256),
    "zip": _zip_bytes(),
    "pickled_int": pickle.dumps(5, protocol=2),
}


@pytest.mark.parametrize("name", sorted(NOT_CHECKPOINTS))
def test_not_a_checkpoint_is_refused(tmp_path, name):
    path = tmp_path / f"{name}.pt"
    path.write_bytes(NOT_CHECKPOINTS[name])
    with pytest.raises(CheckpointError, match=f"{name}.pt"):
        load_checkpoint(path)


def test_plain_data_without_the_format_is_refused(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"model": {"w": torch.zeros(2)}}, path)
    with pytest.raises(CheckpointError, match="not a tfcli checkpoint"):
        load_checkpoint(path)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="nope.pt"):
        load_checkpoint(tmp_path / "nope.pt")


def test_directory_is_refused(tmp_path):
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path)


def test_find_checkpoint(tmp_path, config, tokenizer):
    with pytest.raises(CheckpointError, match=str(tmp_path)):
        find_checkpoint(tmp_path)
    with pytest.raises(CheckpointError):
        find_checkpoint(tmp_path / "no-such-run")
    ckpt = make_checkpoint(config, tokenizer)
    save_checkpoint(RunDir(tmp_path).last, ckpt)
    assert find_checkpoint(tmp_path) == RunDir(tmp_path).last
    save_checkpoint(RunDir(tmp_path).best, ckpt)
    assert find_checkpoint(tmp_path) == RunDir(tmp_path).best
    assert find_checkpoint(RunDir(tmp_path).last) == RunDir(tmp_path).last


def test_average_weights_is_the_mean(tmp_path, config, tokenizer):
    a, b = make_checkpoint(config, tokenizer, seed=0), make_checkpoint(config, tokenizer, seed=1)
    save_checkpoint(tmp_path / "a.pt", a)
    save_checkpoint(tmp_path / "b.pt", b)
    mean = average_weights([tmp_path / "a.pt", tmp_path / "b.pt"])
    assert mean.model.keys() == a.model.keys()
    for key in a.model:
        torch.testing.assert_close(mean.model[key], (a.model[key] + b.model[key]) / 2)
    assert mean.state == {}
    assert mean.config == config
    build_model(mean)  # the averaged weights still fit the model


def test_average_refuses_different_models(tmp_path, config, tokenizer):
    other = dataclasses.replace(config, model=dataclasses.replace(config.model, d_ff=32))
    save_checkpoint(tmp_path / "a.pt", make_checkpoint(config, tokenizer))
    save_checkpoint(tmp_path / "b.pt", make_checkpoint(other, tokenizer))
    with pytest.raises(CheckpointError, match="b.pt"):
        average_weights([tmp_path / "a.pt", tmp_path / "b.pt"])
    with pytest.raises(CheckpointError):
        average_weights([])
