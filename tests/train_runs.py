"""What the training tests read back from a run directory: its metrics records, its checkpoints
compared bit for bit, and `tfcli train` run as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from tfcli.checkpoint import load_checkpoint


def _reject(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")


def records(run_dir: Path) -> list[dict]:
    """The metrics log, read as strict JSON (NaN and Infinity are refused)."""
    text = (run_dir / "metrics.jsonl").read_text(encoding="utf-8")
    return [json.loads(line, parse_constant=_reject) for line in text.splitlines()]


def kind(record: dict) -> str:
    """A record's kind; records of older runs have none (a test record holds "test")."""
    return record.get("kind", "test" if "test" in record else "valid")


def steps_of(run_dir: Path, of: str = "valid") -> list[int]:
    return [r["step"] for r in records(run_dir) if kind(r) == of]


TIMINGS = {"elapsed_s", "valid_s", "tgt_tok_s", "decode_s"}


def _untimed(record: dict) -> dict:
    return {
        k: _untimed(v) if isinstance(v, dict) else v for k, v in record.items() if k not in TIMINGS
    }


def without_timings(run_dir: Path) -> list[dict]:
    """The metrics records with the fields that measure time left out."""
    return [_untimed(r) for r in records(run_dir)]


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = load_checkpoint(a).model, load_checkpoint(b).model
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


def assert_same_training_state(a: Path, b: Path) -> None:
    """Weights and optimizer state bit for bit, and the same step and position."""
    assert_same_weights(a, b)
    sa, sb = load_checkpoint(a), load_checkpoint(b)
    assert (sa.step, sa.state["epoch"], sa.state["batch_in_epoch"]) == (
        sb.step,
        sb.state["epoch"],
        sb.state["batch_in_epoch"],
    )
    opt_a, opt_b = sa.state["optimizer"]["state"], sb.state["optimizer"]["state"]
    assert opt_a.keys() == opt_b.keys()
    for param in opt_b:
        for name, value in opt_b[param].items():
            assert torch.equal(opt_a[param][name], value), (param, name)


def train_command(config: Path, run_dir: Path, *overrides: str) -> list[str]:
    """`python -m tfcli train CONFIG -o RUN --quiet --set ...` as an argument list."""
    sets = [arg for o in overrides for arg in ("--set", o)]
    return [
        sys.executable,
        "-m",
        "tfcli",
        "train",
        str(config),
        "-o",
        str(run_dir),
        "--quiet",
        *sets,
    ]


def start(cmd: list[str], out: Path) -> subprocess.Popen:
    """Start `cmd` single-threaded, its stdout and stderr into `out`.{stdout,stderr}."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    stdout = open(out.with_suffix(".stdout"), "w")  # noqa: SIM115 - closed with the process
    stderr = open(out.with_suffix(".stderr"), "w")  # noqa: SIM115
    return subprocess.Popen(cmd, stdout=stdout, stderr=stderr, env=env)
