"""tfcli prepare: the prepared corpus, its cache key, its batches against the in-memory path,
interrupted builds, the token dtype, the filter counts and the command's errors.

Every case runs on the 300-line slice of the bundled corpus or on a few made-up lines.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from test_cli import error_line, invoke
from train_runs import assert_same_training_state, without_timings

from tfcli.config import load_config
from tfcli.data import encode_workers, line_chunks, preparation
from tfcli.data.batching import epoch_batches
from tfcli.data.encode_workers import token_dtype
from tfcli.data.index_batching import EpochBatches, epoch_plan, python_random_doubles
from tfcli.data.pairs import Example, make_examples
from tfcli.data.preparation import prepare_corpus
from tfcli.data.prepared import PreparedCorpus, read_meta
from tfcli.data.text import read_parallel
from tfcli.data.tokenizer import Tokenizer
from tfcli.errors import TfcliError
from tfcli.run_dir import RunDir
from tfcli.training import training_data
from tfcli.training.trainer import train


@pytest.fixture
def prep_log(caplog):
    caplog.set_level(logging.INFO, logger="tfcli")
    return caplog


def prepared_dirs(run: RunDir) -> list[Path]:
    return sorted(p for p in run.prepared.iterdir() if p.is_dir())


# --- the batches are those of the in-memory path --------------------------------------------


def test_numpy_keys_are_pythons_random_numbers():
    for seed in (0, 1, 7 * 1_000_003 + 3, 2**40 + 5):
        a, b = random.Random(seed), random.Random(seed)
        expected = [a.random() for _ in range(1000)]
        assert python_random_doubles(b, 1000).tolist() == expected
        assert a.getstate() == b.getstate()  # the shuffle after the keys draws the same too


def test_epoch_plan_equals_epoch_batches_on_a_corpus_full_of_ties():
    rng = random.Random(5)
    examples = []
    for i in range(3000):
        ls, lt = rng.randint(1, 12), rng.randint(1, 12)  # few lengths: ties everywhere
        examples.append(Example(i, [7] * ls, [9] * lt))
    src = np.array([len(e.src) for e in examples], np.int32)
    tgt = np.array([len(e.tgt) for e in examples], np.int32)
    for budget, seed, epoch in ((40, 1, 0), (40, 1, 1), (100, 3, 2), (13, 2, 0), (5, 1, 0)):
        expected = [b.indices for b in epoch_batches(examples, budget, seed, epoch)]
        order, starts, ends = epoch_plan(src, tgt, budget, seed, epoch)
        got = [order[s:e].tolist() for s, e in zip(starts, ends)]
        assert got == expected, (budget, seed, epoch)


def _text_examples(tiny_corpus: Path, tok: Tokenizer, max_len: int) -> list[Example]:
    src, tgt = read_parallel(tiny_corpus / "train.de", tiny_corpus / "train.en")
    return make_examples(src, tgt, tok, tok, max_len)[0]


def test_prepared_batches_are_the_batches_built_from_text(tmp_path, make_cfg, tiny_corpus):
    cfg = make_cfg("train.batch_tokens=700")
    run = RunDir(tmp_path / "run")
    corpus = PreparedCorpus(prepare_corpus(cfg, run))
    examples = _text_examples(tiny_corpus, Tokenizer.load(run.shared_spm), cfg.data.max_len)
    for epoch in (0, 1):
        expected = list(epoch_batches(examples, 700, cfg.train.seed, epoch))
        got = EpochBatches.of_epoch(corpus, 700, cfg.train.seed, epoch)
        assert len(got) == len(expected)
        for a, b in zip(got, expected):
            assert a.indices == b.indices
            for name in ("src", "tgt_in", "tgt_out"):
                x, y = getattr(a, name), getattr(b, name)
                assert x.dtype == y.dtype == torch.long and torch.equal(x, y), name
        assert [b.indices for b in got[1::2]] == [b.indices for b in expected[1::2]]


def test_training_on_prepared_data_equals_training_from_the_text(tmp_path, make_cfg, monkeypatch):
    steps = ("train.max_steps=8", "train.log_every=1", "train.valid_every=4")
    train(make_cfg(*steps), tmp_path / "prepared")

    def from_text(self, epoch):  # the in-memory path of before: examples from the text files
        d = make_cfg().data
        src, tgt = read_parallel(f"{d.train}.de", f"{d.train}.en")
        examples, _ = make_examples(src, tgt, self.src_tok, self.tgt_tok, d.max_len)
        return list(epoch_batches(examples, self.batch_tokens, self.seed, epoch))

    monkeypatch.setattr(training_data.TrainingData, "epoch", from_text)
    train(make_cfg(*steps), tmp_path / "text")
    a, b = without_timings(tmp_path / "prepared"), without_timings(tmp_path / "text")
    assert a == b and len([r for r in a if r["kind"] == "train"]) == 8
    assert_same_training_state(
        tmp_path / "prepared" / "checkpoint_last.pt", tmp_path / "text" / "checkpoint_last.pt"
    )


# --- the cache: reused, rebuilt, never stale ----------------------------------------------------


def test_an_unchanged_corpus_is_reused(tmp_path, make_cfg, prep_log):
    cfg, run = make_cfg(), RunDir(tmp_path / "run")
    first = prepare_corpus(cfg, run)
    stamp = (first / "meta.json").stat().st_mtime_ns
    prep_log.clear()
    assert prepare_corpus(cfg, run) == first
    assert "reusing prepared data" in prep_log.text and "preparing" not in prep_log.text
    assert (first / "meta.json").stat().st_mtime_ns == stamp


def _copy_corpus(tiny_corpus: Path, to: Path) -> Path:
    to.mkdir()
    for lang in ("de", "en"):
        shutil.copy(tiny_corpus / f"train.{lang}", to / f"train.{lang}")
    return to / "train"


def test_a_changed_source_file_is_prepared_again(tmp_path, make_cfg, tiny_corpus, prep_log):
    prefix = _copy_corpus(tiny_corpus, tmp_path / "data")
    cfg, run = make_cfg(f"data.train={prefix}"), RunDir(tmp_path / "run")
    first = PreparedCorpus(prepare_corpus(cfg, run))
    de = Path(f"{prefix}.de")
    stat = de.stat()
    text = de.read_text(encoding="utf-8")
    changed = text.replace("a", "o", 1)  # the same size; the time set back below
    assert changed != text and len(changed) == len(text)
    de.write_text(changed, encoding="utf-8")
    os.utime(de, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    prep_log.clear()
    again = PreparedCorpus(prepare_corpus(cfg, run))
    assert "preparing" in prep_log.text
    assert again.directory != first.directory
    assert prepared_dirs(run) == [again.directory]  # the stale one is gone
    de.write_text(text + "noch ein satz\n", encoding="utf-8")
    Path(f"{prefix}.en").write_text(
        Path(f"{prefix}.en").read_text(encoding="utf-8") + "one more sentence\n", "utf-8"
    )
    longer = PreparedCorpus(prepare_corpus(cfg, run))
    assert len(longer) == len(first) + 1


def test_another_tokenizer_or_filter_is_prepared_again(tmp_path, make_cfg, spm_model, prep_log):
    run = RunDir(tmp_path / "run")
    base = prepare_corpus(make_cfg(), run)
    for override in ("data.max_len=20", "data.max_len_ratio=1.5"):
        prep_log.clear()
        other = prepare_corpus(make_cfg(override), run)
        assert other != base and "preparing" in prep_log.text, override
    # another tokenizer in the run directory (a train --overwrite with other keys)
    run.shared_spm.unlink()
    prep_log.clear()
    cfg = make_cfg("tokenizer.model=null", "tokenizer.vocab_size=300")
    retokenized = PreparedCorpus(prepare_corpus(cfg, run))
    assert "preparing" in prep_log.text and retokenized.directory != base
    assert len(Tokenizer.load(run.shared_spm)) == 300


def test_data_cache_dir_is_shared_by_runs(tmp_path, make_cfg, prep_log):
    cache = tmp_path / "cache"
    cfg = make_cfg(f"data.cache_dir={cache}")
    first = prepare_corpus(cfg, RunDir(tmp_path / "a"))
    prep_log.clear()
    assert prepare_corpus(cfg, RunDir(tmp_path / "b")) == first
    assert "reusing prepared data" in prep_log.text
    assert first.parent == cache and not (tmp_path / "b" / "prepared").exists()
    other = prepare_corpus(
        make_cfg(f"data.cache_dir={cache}", "data.max_len=20"), RunDir(tmp_path / "c")
    )
    assert sorted(p for p in cache.iterdir()) == sorted([first, other])  # both are kept


# --- interrupted builds are never taken for complete -------------------------------------------


def test_a_build_interrupted_mid_way_leaves_nothing_complete(tmp_path, make_cfg, monkeypatch):
    cfg, run = make_cfg(), RunDir(tmp_path / "run")

    def killed(self, meta):
        raise KeyboardInterrupt  # as a Ctrl-C between the last chunk and meta.json

    monkeypatch.setattr(preparation.PreparedWriter, "finish", killed)
    with pytest.raises(KeyboardInterrupt):
        prepare_corpus(cfg, run)
    assert list(run.prepared.iterdir()) == []
    monkeypatch.undo()
    assert read_meta(prepare_corpus(cfg, run)) is not None


def test_leftovers_of_a_killed_build_are_removed_and_rebuilt(tmp_path, make_cfg, prep_log):
    cfg, run = make_cfg(), RunDir(tmp_path / "run")
    done = prepare_corpus(cfg, run)
    # what a SIGKILL leaves: a temporary directory of a dead process, and (by hand) a final
    # directory without its meta.json
    dead = run.prepared / f".tmp-{done.name}-999999"
    shutil.copytree(done, dead)
    (done / "meta.json").unlink()
    prep_log.clear()
    again = prepare_corpus(cfg, run)
    assert again == done and not dead.exists()
    assert "removed" in prep_log.text and "preparing" in prep_log.text
    assert read_meta(again) is not None
    with pytest.raises(TfcliError, match="not a complete prepared corpus"):
        PreparedCorpus(dead.parent / "nothing")


# --- the on-disk format ------------------------------------------------------------------------


def test_token_dtype_is_uint16_under_65536_subwords():
    assert token_dtype(8000) == np.uint16
    assert token_dtype(65_535) == np.uint16
    assert token_dtype(65_536) == np.uint32
    assert token_dtype(1_000_000) == np.uint32


def test_a_large_vocabulary_is_stored_as_uint32(tmp_path, make_cfg, monkeypatch, tiny_corpus):
    small = PreparedCorpus(prepare_corpus(make_cfg(), RunDir(tmp_path / "a")))
    assert small.meta["dtype"] == "uint16" and small.ids["src"].dtype == np.uint16
    monkeypatch.setattr(Tokenizer, "__len__", lambda self: 70_000)
    big = PreparedCorpus(prepare_corpus(make_cfg(), RunDir(tmp_path / "b")))
    assert big.meta["dtype"] == "uint32" and big.ids["src"].dtype == np.uint32
    assert (big.directory / "src.bin").stat().st_size == 2 * (
        small.directory / "src.bin"
    ).stat().st_size
    for i in range(len(small)):
        assert small.ids_of("src", i).tolist() == big.ids_of("src", i).tolist()


def test_the_filters_count_what_they_drop_as_before(tmp_path, make_cfg, tiny_corpus, prep_log):
    src, tgt = read_parallel(tiny_corpus / "train.de", tiny_corpus / "train.en")
    src[3], tgt[5] = "", "  "  # empty sides are dropped too
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.de").write_text("\n".join(src) + "\n", encoding="utf-8")
    (data / "train.en").write_text("\n".join(tgt) + "\n", encoding="utf-8")
    cfg = make_cfg(f"data.train={data / 'train'}", "data.max_len=20", "data.max_len_ratio=1.3")
    run = RunDir(tmp_path / "run")
    corpus = training_data.open_training_corpus(cfg, run, training_data.Distributed())
    tok = Tokenizer.load(run.shared_spm)
    examples, report = make_examples(src, tgt, tok, tok, 20, 1.3)
    assert corpus.report == report
    assert report.empty == 2 and report.too_long > 0 and report.bad_ratio > 0
    assert f"training data {data / 'train'}: {report}" in prep_log.text
    assert corpus.lines.tolist() == [e.index for e in examples]
    assert [corpus.ids_of("tgt", i).tolist() for i in range(len(corpus))] == [
        e.tgt for e in examples
    ]


def test_workers_write_what_one_process_writes(tmp_path, make_cfg, monkeypatch):
    one = prepare_corpus(make_cfg("data.workers=1"), RunDir(tmp_path / "one"))
    monkeypatch.setattr(line_chunks, "CHUNK_LINES", 40)  # 8 chunks: the pool is used
    encode_workers._worker.clear()  # what the first prepare loaded in this process
    two = prepare_corpus(make_cfg("data.workers=2"), RunDir(tmp_path / "two"))
    assert encode_workers._worker == {}  # the worker processes encoded, this one did not
    for name in ("src.bin", "tgt.bin", "src_lens.npy", "tgt_offsets.npy", "lines.npy"):
        assert (one / name).read_bytes() == (two / name).read_bytes(), name
    assert json.loads((one / "meta.json").read_text())["pairs"] == read_meta(two)["pairs"]


def test_gzip_files_are_streamed(tmp_path, make_cfg, tiny_corpus):
    import gzip

    data = tmp_path / "data"
    data.mkdir()
    for lang in ("de", "en"):
        raw = (tiny_corpus / f"train.{lang}").read_bytes()
        (data / f"train.{lang}.gz").write_bytes(gzip.compress(raw))
    plain = PreparedCorpus(prepare_corpus(make_cfg(), RunDir(tmp_path / "a")))
    gz = PreparedCorpus(
        prepare_corpus(make_cfg(f"data.train={data / 'train'}"), RunDir(tmp_path / "b"))
    )
    assert len(gz) == len(plain)
    assert (gz.directory / "src.bin").read_bytes() == (plain.directory / "src.bin").read_bytes()


# --- tfcli prepare -----------------------------------------------------------------------------


def test_prepare_then_train_uses_what_was_prepared(tmp_path, tiny_config, spm_model):
    run = tmp_path / "run"
    sets = ["--set", f"tokenizer.model={spm_model}", "--set", "data.test=null"]
    result = invoke("prepare", tiny_config, "-o", run, *sets)
    assert result.exit_code == 0, result.output
    assert "prepared" in result.stderr and result.stdout == ""
    (prepared,) = prepared_dirs(RunDir(run))
    assert (RunDir(run).config).exists() and RunDir(run).shared_spm.exists()
    result = invoke("train", tiny_config, "-o", run, *sets, "--set", "train.max_steps=2")
    assert result.exit_code == 0, result.output
    assert "reusing prepared data" in result.stderr
    assert prepared_dirs(RunDir(run)) == [prepared]
    assert load_config(RunDir(run).config).train.max_steps == 2


def test_prepare_missing_file_is_one_line(tmp_path, tiny_config):
    prefix = tmp_path / "absent"
    result = invoke("prepare", tiny_config, "-o", tmp_path / "run", "--set", f"data.train={prefix}")
    message = error_line(result)
    assert f"{prefix}.de: file not found" in message


@pytest.mark.parametrize("given_tokenizer", [False, True])
def test_prepare_mismatched_files_name_both(tmp_path, tiny_config, spm_model, given_tokenizer):
    (tmp_path / "short.de").write_text("eins\nzwei\ndrei\n", encoding="utf-8")
    (tmp_path / "short.en").write_text("one\ntwo\n", encoding="utf-8")
    sets = ["--set", f"data.train={tmp_path / 'short'}"]
    if given_tokenizer:  # the encoding pass finds it (no tokenizer is trained first)
        sets += ["--set", f"tokenizer.model={spm_model}", "--quiet"]
    message = error_line(invoke("prepare", tiny_config, "-o", tmp_path / "run", *sets))
    assert f"{tmp_path / 'short.de'} has 3 lines but {tmp_path / 'short.en'} has 2" in message
    assert not (tmp_path / "run" / "spm.model").exists() or given_tokenizer


@pytest.mark.parametrize("given_tokenizer", [False, True])
def test_prepare_invalid_utf8_names_file_and_line(
    tmp_path, tiny_config, spm_model, given_tokenizer
):
    (tmp_path / "bad.de").write_bytes(b"eins\nzwei\n\xff drei\n")
    (tmp_path / "bad.en").write_text("one\ntwo\nthree\n", encoding="utf-8")
    sets = ["--set", f"data.train={tmp_path / 'bad'}", "--quiet"]
    if given_tokenizer:
        sets += ["--set", f"tokenizer.model={spm_model}"]
    message = error_line(invoke("prepare", tiny_config, "-o", tmp_path / "run", *sets))
    assert f"{tmp_path / 'bad.de'}:3: not valid UTF-8" in message


def test_prepare_help_shows_an_example_and_imports_no_torch():
    import subprocess
    import sys

    script = (
        "import sys\n"
        "import tfcli.cli\n"
        "try:\n"
        "    tfcli.cli.app(['prepare', '--help'], prog_name='tfcli')\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
        "assert 'torch' not in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "Example" in proc.stdout and "tfcli prepare" in proc.stdout
