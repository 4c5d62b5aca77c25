"""The `tfcli` command end to end: train, translate, eval, average, help, and user errors.

One tiny model is trained once per session with `tfcli train` and reused by the translate and
eval tests. Commands run in-process through Typer's CliRunner, or as a real process where
stdin, stdout, the working directory or the import of torch matter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner, Result

from tfcli.checkpoint import build_model, load_checkpoint
from tfcli.cli import app
from tfcli.config import load_config
from tfcli.run_dir import RunDir

COMMANDS = ["train", "translate", "eval", "average", "serve", "info", "plot"]


def invoke(*args: object, stdin: str | None = None) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args], input=stdin)


def run_tfcli(*args: object, cwd: Path | None = None, stdin: str | None = None):
    """`python -m tfcli ARGS` as a real process, single-threaded."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "tfcli", *map(str, args)],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )


def error_line(result: Result) -> str:
    """The one-line message of a failed command; it must exit 1 without a traceback."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert result.stdout == ""
    return lines[0]


def records(run_dir: Path) -> list[dict]:
    text = (run_dir / "metrics.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


@dataclass
class TrainedRun:
    """A run directory trained with `tfcli train`, and what the command printed."""

    run_dir: Path
    stdout: str
    stderr: str


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_config) -> TrainedRun:
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    result = invoke("train", tiny_config, "-o", run_dir)
    assert result.exit_code == 0, result.output
    return TrainedRun(run_dir, result.stdout, result.stderr)


@pytest.fixture(scope="module")
def test_set(tiny_corpus) -> tuple[Path, Path]:
    return tiny_corpus / "test.de", tiny_corpus / "test.en"


# --- train ----------------------------------------------------------------------------------


def test_train_writes_a_complete_run_directory(trained, tiny_config):
    run = trained.run_dir
    files = RunDir(run)
    for path in (files.config, files.shared_spm, files.last, files.best, files.metrics):
        assert path.is_file(), path
    assert load_config(run / "config.yaml") == load_config(tiny_config)
    assert load_checkpoint(RunDir(run).last).step == 40


def test_train_metrics_hold_one_record_per_validation_and_the_test_scores(trained):
    *others, final = records(trained.run_dir)
    validations = [r for r in others if r["kind"] == "valid"]
    assert [r["step"] for r in validations] == [10, 20, 30, 40]
    for r in validations:
        assert {"step", "train_loss", "dev_loss", "dev_ppl", "dev_bleu"} <= r.keys()
    assert final["kind"] == "test" and final["step"] == 40
    assert {"bleu", "chrf", "bleu_signature"} <= final["test"].keys()
    losses = [r for r in others if r["kind"] == "train"]
    assert [r["step"] for r in losses] == list(range(5, 41, 5))  # train.log_every: 5
    for r in losses:
        assert r.keys() == {"kind", "step", "epoch", "train_loss", "lr", "tgt_tok_s"}


def test_train_prints_only_the_result_on_stdout(trained):
    test = records(trained.run_dir)[-1]["test"]
    assert trained.stdout == f"test BLEU {test['bleu']:.2f}  chrF {test['chrf']:.2f}\n"
    assert "validation" in trained.stderr
    assert "training stopped at step 40" in trained.stderr


def test_train_set_overrides_the_config(tmp_path, tiny_config, trained):
    run = tmp_path / "run"
    result = invoke(
        "train",
        tiny_config,
        "-o",
        run,
        "--quiet",
        "--set",
        "train.max_steps=3",
        "--set",
        "data.test=null",
        "--set",
        f"tokenizer.model={trained.run_dir / 'spm.model'}",
    )
    assert result.exit_code == 0, result.output
    assert load_checkpoint(RunDir(run).last).step == 3
    assert load_config(run / "config.yaml").train.max_steps == 3
    assert result.stdout == ""  # no test set, no result line


def test_train_bad_override_names_the_key_and_suggests_one(tmp_path, tiny_config):
    result = invoke("train", tiny_config, "-o", tmp_path / "run", "--set", "model.d_modle=3")
    message = error_line(result)
    assert "model.d_modle" in message
    assert "did you mean model.d_model" in message
    assert not (tmp_path / "run").exists()


def test_train_unknown_key_in_the_file(tmp_path, tiny_config):
    config = tmp_path / "typo.yaml"
    config.write_text(
        tiny_config.read_text(encoding="utf-8").replace("d_ff:", "d_fff:"), encoding="utf-8"
    )
    message = error_line(invoke("train", config, "-o", tmp_path / "run"))
    assert str(config) in message
    assert "model.d_fff: unknown key" in message
    assert "model.d_ff" in message


def test_train_yaml_syntax_error_names_file_line_and_column(tmp_path):
    config = tmp_path / "broken.yaml"
    config.write_text("model:\n  d_model: 32\n  heads: 2: 3\n", encoding="utf-8")
    message = error_line(invoke("train", config, "-o", tmp_path / "run"))
    assert f"{config}:3:11: invalid YAML" in message


def test_train_missing_config_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    message = error_line(invoke("train", missing, "-o", tmp_path / "run"))
    assert str(missing) in message
    assert "not found" in message


def test_train_missing_data_file_names_the_path(tmp_path, tiny_config):
    prefix = tmp_path / "absent"
    result = invoke("train", tiny_config, "-o", tmp_path / "run", "--set", f"data.train={prefix}")
    message = error_line(result)
    assert f"{prefix}.de" in message
    assert "not found" in message


def test_train_mismatched_parallel_files_name_both_files_and_counts(tmp_path, tiny_config):
    (tmp_path / "short.de").write_text("eins\nzwei\ndrei\n", encoding="utf-8")
    (tmp_path / "short.en").write_text("one\ntwo\n", encoding="utf-8")
    result = invoke(
        "train", tiny_config, "-o", tmp_path / "run", "--set", f"data.train={tmp_path / 'short'}"
    )
    message = error_line(result)
    assert f"{tmp_path / 'short.de'} has 3 lines" in message
    assert f"{tmp_path / 'short.en'} has 2" in message


# --- translate --------------------------------------------------------------------------------


def test_translate_arguments_give_one_line_each(trained):
    result = invoke("translate", "-m", trained.run_dir, "Guten Morgen.", "", "Das Haus ist rot.")
    assert result.exit_code == 0, result.output
    lines = result.stdout.split("\n")
    assert len(lines) == 4 and lines[-1] == ""  # three lines, each ending in a newline
    assert lines[1] == ""


@pytest.mark.parametrize("batch_tokens", [4000, 16])  # one batch, or a batch per sentence
def test_translate_keeps_input_order(memorized_run, overfit, batch_tokens):
    src, want = overfit.sources, overfit.translations  # four different outputs
    for order in ([0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1]):
        result = invoke(
            "translate",
            "-m",
            memorized_run,
            "--batch-tokens",
            batch_tokens,
            *[src[i] for i in order],
        )
        assert result.exit_code == 0, result.output
        assert result.stdout.splitlines() == [want[i] for i in order]


def test_translate_accepts_a_run_directory_or_a_checkpoint_file(trained):
    by_dir = invoke("translate", "-m", trained.run_dir, "Guten Morgen.")
    by_file = invoke("translate", "-m", RunDir(trained.run_dir).best, "Guten Morgen.")
    assert by_dir.exit_code == by_file.exit_code == 0
    assert by_dir.stdout == by_file.stdout


def test_translate_stdin_keeps_every_line_in_order(memorized_run, overfit):
    src, want = overfit.sources, overfit.translations
    lines = [src[2], "", "   ", src[0], "\t", src[3], src[1]]
    expected = [want[2], "", "", want[0], "", want[3], want[1]]
    in_process = invoke("translate", "-m", memorized_run, *lines)
    assert in_process.exit_code == 0, in_process.output
    proc = run_tfcli("translate", "-m", memorized_run, stdin="\n".join(lines) + "\n")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.split("\n")
    assert out[-1] == "" and len(out) == len(lines) + 1
    assert out[:-1] == expected
    assert proc.stdout == in_process.stdout


def test_translate_input_and_output_files(tmp_path, memorized_run, overfit):
    src, want = overfit.sources, overfit.translations
    path = tmp_path / "in.de"
    path.write_text(f"{src[1]}\n\n{src[0]}\n", encoding="utf-8")
    out = tmp_path / "out.en"
    result = invoke("translate", "-m", memorized_run, "--input", path, "--output", out)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert out.read_text(encoding="utf-8") == f"{want[1]}\n\n{want[0]}\n"


def test_translate_without_model_uses_the_latest_run(tmp_path, trained):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "tiny").symlink_to(trained.run_dir, target_is_directory=True)
    proc = run_tfcli("translate", "Guten Morgen.", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "using the latest run" in proc.stderr
    assert str(Path("runs") / "tiny") in proc.stderr
    expected = invoke("translate", "-m", trained.run_dir, "Guten Morgen.")
    assert proc.stdout == expected.stdout


def test_translate_n_best_prints_rows_with_line_text_and_score(trained):
    result = invoke(
        "translate", "-m", trained.run_dir, "--n-best", 2, "--beam", 2, "Guten Morgen.", "Danke."
    )
    assert result.exit_code == 0, result.output
    rows = [row.split("\t") for row in result.stdout.splitlines()]
    assert [row[0] for row in rows] == ["1", "1", "2", "2"]
    assert all(len(row) == 3 for row in rows)
    for first, second in (rows[0:2], rows[2:4]):
        assert float(first[2]) >= float(second[2])  # best first


def test_translate_n_best_gives_an_empty_line_its_n_rows(trained):
    result = invoke("translate", "-m", trained.run_dir, "--n-best", 3, "Danke.", "", "Ja.")
    assert result.exit_code == 0, result.output
    rows = [row.split("\t") for row in result.stdout.splitlines()]
    assert [row[0] for row in rows] == ["1"] * 3 + ["2"] * 3 + ["3"] * 3
    assert [row[1] for row in rows[3:6]] == ["", "", ""]


def test_translate_rejects_a_file_that_is_not_a_checkpoint(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a model\n", encoding="utf-8")
    message = error_line(invoke("translate", "-m", notes, "Hallo."))
    assert str(notes) in message


def test_translate_missing_run_directory(tmp_path):
    missing = tmp_path / "runs" / "nothing"
    message = error_line(invoke("translate", "-m", missing, "Hallo."))
    assert str(missing) in message


# --- eval -------------------------------------------------------------------------------------


def test_eval_prints_a_table(trained, test_set):
    src, ref = test_set
    result = invoke("eval", "-m", trained.run_dir, "--src", src, "--ref", ref)
    assert result.exit_code == 0, result.output
    assert "BLEU" in result.stdout and "chrF" in result.stdout
    assert "nrefs:1" in result.stdout  # the sacrebleu signature


def test_eval_json_matches_the_sacrebleu_command(tmp_path, trained, test_set):
    src, ref = test_set
    hyp = tmp_path / "test.hyp"
    result = invoke(
        "eval", "-m", trained.run_dir, "--src", src, "--ref", ref, "--json", "--hyp-out", hyp
    )
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    assert {"bleu", "chrf", "bleu_signature"} <= scores.keys()
    hyps = hyp.read_text(encoding="utf-8").split("\n")
    assert len(hyps) == 21 and hyps[-1] == ""  # one line per source line
    sacrebleu = [sys.executable, "-m", "sacrebleu", str(ref), "-i", str(hyp)]
    reference = subprocess.run(
        [*sacrebleu, "-m", "bleu", "-b", "-w", "4"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert scores["bleu"] == pytest.approx(float(reference.stdout), abs=1e-4)


# --- average, help, entry points ----------------------------------------------------------------


def test_average_writes_a_loadable_checkpoint(tmp_path, trained):
    first, second = RunDir(trained.run_dir).best, RunDir(trained.run_dir).last
    out = tmp_path / "averaged.pt"
    result = invoke("average", first, second, "-o", out)
    assert result.exit_code == 0, result.output
    averaged = load_checkpoint(out)
    build_model(averaged)
    a, b = load_checkpoint(first).model, load_checkpoint(second).model
    for key, value in averaged.model.items():
        if value.is_floating_point():
            torch.testing.assert_close(value, (a[key] + b[key]) / 2)


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help_shows_an_example(command):
    result = invoke(command, "--help")
    assert result.exit_code == 0, result.output
    assert "Example" in result.stdout
    assert f"tfcli {command}" in result.stdout


def test_main_help_lists_the_commands():
    result = invoke("--help")
    assert result.exit_code == 0, result.output
    for command in COMMANDS:
        assert command in result.stdout


def test_help_does_not_import_torch():
    script = (
        "import sys\n"
        "import tfcli.cli\n"
        "assert 'torch' not in sys.modules, 'import'\n"
        f"for command in ([], *([c] for c in {COMMANDS!r})):\n"
        "    try:\n"
        "        tfcli.cli.app([*command, '--help'], prog_name='tfcli')\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 0, e.code\n"
        "for name in ('torch', 'fastapi', 'uvicorn', 'plotext', 'matplotlib'):\n"
        "    assert name not in sys.modules, name\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr


def test_python_m_tfcli_help():
    proc = run_tfcli("--help")
    assert proc.returncode == 0, proc.stderr
    assert "translate" in proc.stdout
