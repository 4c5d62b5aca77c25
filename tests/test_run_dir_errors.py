"""A run directory that cannot be written: one line naming the path, exit 1, nothing damaged.

A full disk is simulated by a temporary file whose writes fail with ENOSPC part of the way
through (the tool runs as root here, so a read-only directory would not stop it).
"""

from __future__ import annotations

import errno
import io
import os

from typer.testing import CliRunner, Result

from tfcli import atomic
from tfcli.checkpoint import load_checkpoint
from tfcli.cli import app
from tfcli.run_dir import RunDir


def train_cli(config, run, spm_model, *overrides: str) -> Result:
    args = [
        "train",
        str(config),
        "-o",
        str(run),
        "--quiet",
        "--set",
        f"tokenizer.model={spm_model}",
    ]
    for o in ("data.test=null", "train.valid_every=2", *overrides):
        args += ["--set", o]
    return CliRunner().invoke(app, args)


def one_error(result: Result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


class FullDisk(io.FileIO):
    """A file that takes `room` bytes and then fails as a full disk does."""

    room = 100_000

    def write(self, data) -> int:
        if self.tell() + len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().write(data)


def test_an_output_dir_that_is_a_file(tmp_path, tiny_config, spm_model):
    path = tmp_path / "taken"
    path.write_text("not a run")
    message = one_error(train_cli(tiny_config, path, spm_model))
    assert message == f"error: {path}: is a file, not a run directory; give another --output-dir"
    assert path.read_text() == "not a run"


def test_an_output_dir_that_cannot_be_created(tmp_path, tiny_config, spm_model):
    (tmp_path / "file").write_text("")
    path = tmp_path / "file" / "run"
    message = one_error(train_cli(tiny_config, path, spm_model))
    assert message.startswith(f"error: {path}: cannot write run directory (")


def test_a_full_disk_while_saving_keeps_the_previous_checkpoint(
    tmp_path, monkeypatch, tiny_config, spm_model
):
    run = RunDir(tmp_path / "run")
    assert train_cli(tiny_config, run.path, spm_model, "train.max_steps=2").exit_code == 0
    before = run.last.read_bytes()
    monkeypatch.setattr(atomic, "open_temp", lambda path: FullDisk(path, "wb"))
    message = one_error(train_cli(tiny_config, run.path, spm_model, "train.max_steps=4"))
    assert message.startswith(f"error: {run.path}/checkpoint_")
    assert message.endswith(": cannot write checkpoint (No space left on device)")
    assert run.last.read_bytes() == before and load_checkpoint(run.last).step == 2
    assert not list(run.path.glob(".*.tmp*"))
    monkeypatch.undo()  # room again: the same command carries on
    assert train_cli(tiny_config, run.path, spm_model, "train.max_steps=4").exit_code == 0
    assert load_checkpoint(run.last).step == 4


def test_stale_temporary_files_are_removed_at_start(tmp_path, tiny_config, spm_model):
    run = tmp_path / "run"
    run.mkdir()
    stale = run / ".checkpoint_last.pt.tmp4242"
    stale.write_bytes(b"half a checkpoint")
    assert train_cli(tiny_config, run, spm_model, "train.max_steps=1").exit_code == 0
    assert not stale.exists()
