"""`tfcli info`: the facts of a run directory or checkpoint, read without building the model."""

from __future__ import annotations

import json

import pytest
from logged_run import STATE, TEST, write_logged_run
from typer.testing import CliRunner

from tfcli.checkpoint import build_model, load_checkpoint
from tfcli.cli import app
from tfcli.config import config_to_dict
from tfcli.model.transformer import count_parameters
from tfcli.run_info import describe
from tfcli.translation.scoring import bleu_signature


def invoke(*args):
    return CliRunner().invoke(app, ["info", *map(str, args)])


@pytest.fixture(scope="module")
def logged(tmp_path_factory, overfit, tokenizer):
    return write_logged_run(tmp_path_factory.mktemp("logged"), overfit.model, tokenizer)


def test_a_run_shows_its_model_training_scores_and_files(logged, overfit, tokenizer):
    facts = describe(logged.path)
    ckpt = load_checkpoint(logged.best)
    assert facts["checkpoint"] == {"file": "checkpoint_best.pt", "step": 30}
    assert facts["parameters"] == count_parameters(build_model(ckpt))
    assert facts["languages"] == {"source": "fr", "target": "it"}
    assert facts["model"] == config_to_dict(ckpt.config)["model"]
    assert facts["tokenizer"]["vocab_size"] == ckpt.config.tokenizer.vocab_size
    assert facts["vocabulary"] == {
        "source": len(tokenizer),
        "target": len(tokenizer),
        "shared": True,
    }
    assert facts["training"] == {
        "steps": 40,
        "epochs_completed": STATE["epoch"],
        "batches_into_epoch": 5,
        "seconds": 93.2,
    }
    assert facts["dev"] == {
        "bleu": 9.25,
        "step": 30,
        "dev_loss": 3.75,
        "decoding": "greedy",
        "sentences": "all",
        "signature": bleu_signature(),
    }
    assert facts["test"] == TEST
    sizes = {p.name: p.stat().st_size for p in logged.path.iterdir()}
    assert {f["file"]: f["bytes"] for f in facts["files"]} == sizes
    steps = {f["file"]: f.get("step") for f in facts["files"]}
    assert steps == {
        "checkpoint_best.pt": 30,
        "checkpoint_step30.pt": 30,
        "checkpoint_last.pt": 40,
        "metrics.jsonl": None,
    }
    assert facts["size_bytes"] == sum(sizes.values())


def test_a_checkpoint_file_shows_itself(logged):
    facts = describe(logged.last)
    assert facts["checkpoint"] == {"file": "checkpoint_last.pt", "step": 40}
    assert [f["file"] for f in facts["files"]] == ["checkpoint_last.pt"]
    assert facts["training"]["seconds"] == 93.2
    assert facts["dev"] is None and facts["test"] is None


def test_info_never_builds_the_model(logged, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a model was built")

    monkeypatch.setattr("tfcli.model.transformer.Transformer.__init__", refuse)
    assert describe(logged.path)["parameters"] > 0


def test_info_json_is_the_facts_and_the_table_shows_them(logged):
    result = invoke(logged.path, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == json.loads(json.dumps(describe(logged.path)))
    result = invoke(logged.path)
    assert result.exit_code == 0, result.output
    facts = describe(logged.path)
    for text in (
        f"{facts['parameters']:,}",
        "fr → it",
        "40 updates, 2 epochs + 5 batches, 1.6 min",
        "9.25 at update 30",
        "BLEU 31.50, chrF 52.25",
        "checkpoint_step30.pt",
    ):
        assert text in result.stdout, text


def test_a_run_written_before_record_kinds_reads_the_same(tmp_path, overfit, tokenizer, logged):
    old = write_logged_run(tmp_path / "old", overfit.model, tokenizer, kinds=False)
    new = describe(logged.path)
    facts = describe(old.path)
    assert (facts["dev"], facts["test"]) == (new["dev"], new["test"])


def test_bad_paths_and_logs_are_one_line(tmp_path, logged, overfit, tokenizer):
    result = invoke(tmp_path / "missing")
    assert (
        result.exit_code == 1
        and result.stderr
        == f"error: {tmp_path / 'missing'}: no such run directory or checkpoint file\n"
    )
    text_file = tmp_path / "notes.txt"
    text_file.write_text("hello\n", encoding="utf-8")
    result = invoke(text_file)
    assert (
        result.exit_code == 1 and result.stderr == f"error: {text_file}: not a tfcli checkpoint\n"
    )
    broken = write_logged_run(tmp_path / "broken", overfit.model, tokenizer)
    with open(broken.metrics, "a", encoding="utf-8") as f:
        f.write('{"kind": "valid", "step": 5\n')
    result = invoke(broken.path)
    lines = len(broken.metrics.read_text(encoding="utf-8").splitlines())
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {broken.metrics}:{lines}: not a JSON record")
    assert "Traceback" not in result.output
