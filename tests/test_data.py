"""tfcli.data: reading and checking parallel files, length filters, token-based batches."""

from __future__ import annotations

import gzip
import random
from collections import Counter

import pytest
import torch

from tfcli.data.batching import batch_by_tokens, collate, epoch_batches
from tfcli.data.pairs import Example, make_examples
from tfcli.data.text import read_lines, read_parallel, resolve_path
from tfcli.data.tokenizer import BOS_ID, EOS_ID, PAD_ID
from tfcli.errors import DataError

LINES = ["Guten Morgen.", "Wie geht's?", "", "Straße über Brücken — schön"]


def examples_of_lengths(n: int, seed: int = 0) -> list[Example]:
    """`n` examples with random source and target lengths 1..12."""
    rng = random.Random(seed)
    return [Example(i, [4] * rng.randint(1, 12), [5] * rng.randint(1, 12)) for i in range(n)]


def test_read_plain_and_gzip_identically(tmp_path):
    text = "\n".join(LINES) + "\n"
    plain, gz = tmp_path / "a.de", tmp_path / "b.de.gz"
    plain.write_text(text, encoding="utf-8")
    gz.write_bytes(gzip.compress(text.encode("utf-8")))
    assert read_lines(plain) == LINES
    assert read_lines(gz) == LINES


def test_read_lines_without_final_newline_and_crlf(tmp_path):
    path = tmp_path / "a.en"
    path.write_bytes(b"one\r\ntwo\r\nthree")
    assert read_lines(path) == ["one", "two", "three"]


def test_invalid_utf8_names_file_and_line(tmp_path):
    path = tmp_path / "bad.de"
    path.write_bytes(b"ok\nstill ok\nbroken \xff here\n")
    with pytest.raises(DataError) as e:
        read_lines(path)
    assert f"{path}:3" in str(e.value)


@pytest.mark.parametrize("damage", ["truncated", "corrupted"])
def test_broken_gzip_names_file(tmp_path, damage):
    data = gzip.compress(b"hallo welt\n" * 50)
    if damage == "truncated":
        data = data[: len(data) // 2]
    else:  # keep the header and trailer, scramble the compressed stream
        data = data[:12] + bytes(b ^ 0x55 for b in data[12:-8]) + data[-8:]
    path = tmp_path / "train.de.gz"
    path.write_bytes(data)
    with pytest.raises(DataError, match="train.de.gz"):
        read_lines(path)


def test_missing_file_names_it(tmp_path):
    with pytest.raises(DataError, match="nothere.de"):
        read_lines(tmp_path / "nothere.de")


def test_read_parallel_line_count_mismatch(tmp_path):
    src, tgt = tmp_path / "train.de", tmp_path / "train.en"
    src.write_text("a\nb\nc\n", encoding="utf-8")
    tgt.write_text("a\nb\n", encoding="utf-8")
    with pytest.raises(DataError) as e:
        read_parallel(src, tgt)
    msg = str(e.value)
    assert str(src) in msg and str(tgt) in msg
    assert "3" in msg and "2" in msg


def test_read_parallel(tmp_path):
    src, tgt = tmp_path / "x.de", tmp_path / "x.en"
    src.write_text("hallo\nwelt\n", encoding="utf-8")
    tgt.write_text("hello\nworld\n", encoding="utf-8")
    assert read_parallel(src, tgt) == (["hallo", "welt"], ["hello", "world"])


def test_make_examples_counts_what_it_drops(tokenizer, corpus):
    src, tgt = corpus
    lengths = [len(ids) for ids in tokenizer.encode(src[:10])]
    max_len = sorted(lengths)[5] + 1  # a limit some pairs exceed (EOS counts)
    src_lines = src[:10] + ["", "der hund"]
    tgt_lines = tgt[:10] + ["the dog", ""]
    examples, report = make_examples(src_lines, tgt_lines, tokenizer, tokenizer, max_len=max_len)
    assert report.empty == 2
    assert report.too_long > 0
    assert report.kept == len(examples)
    assert report.kept + report.empty + report.too_long + report.bad_ratio == len(src_lines)
    for e in examples:
        assert len(e.src) + 1 <= max_len and len(e.tgt) + 1 <= max_len
    assert [e.index for e in examples] == sorted(e.index for e in examples)
    assert str(report.too_long) in str(report)


def test_make_examples_length_ratio(tokenizer):
    src = ["der hund sieht den ball .", "der hund"]
    tgt = ["the dog sees the ball .", "the dog sees the ball in the house of the man ."]
    examples, report = make_examples(src, tgt, tokenizer, tokenizer, max_ratio=2.0)
    assert report.bad_ratio == 1 and report.kept == 1
    assert examples[0].index == 0


def test_batches_respect_the_token_budget():
    examples = examples_of_lengths(200)
    examples.append(Example(200, [4] * 40, [5]))  # longer than the budget on its own
    budget = 32
    batches = batch_by_tokens(examples, budget, random.Random(0))
    for batch in batches:
        padded = len(batch) * max(max(len(e.src), len(e.tgt)) + 1 for e in batch)
        assert padded <= budget or len(batch) == 1
    assert any(len(b) == 1 and b[0].index == 200 for b in batches)


def test_every_example_in_exactly_one_batch():
    examples = examples_of_lengths(150)
    batches = batch_by_tokens(examples, 50, random.Random(3))
    counts = Counter(e.index for batch in batches for e in batch)
    assert counts == Counter(range(150))
    epoch = list(epoch_batches(examples, 50, seed=1, epoch=0))
    assert sorted(i for b in epoch for i in b.indices) == list(range(150))


def test_epoch_order_depends_only_on_seed_and_epoch():
    examples = examples_of_lengths(150)

    def order(seed: int, epoch: int) -> list[list[int]]:
        return [b.indices for b in epoch_batches(examples, 40, seed, epoch)]

    assert order(1, 0) == order(1, 0)
    assert order(1, 0) != order(1, 1)
    assert order(1, 0) != order(2, 0)


def test_collate_shapes_and_special_tokens():
    examples = [Example(7, [10, 11, 12], [20]), Example(9, [13], [21, 22, 23, 24])]
    batch = collate(examples)
    assert batch.src.shape == (2, 4)
    assert batch.tgt_in.shape == batch.tgt_out.shape == (2, 5)
    assert batch.indices == [7, 9]
    assert batch.src.tolist() == [[10, 11, 12, EOS_ID], [13, EOS_ID, PAD_ID, PAD_ID]]
    assert batch.tgt_in.tolist() == [
        [BOS_ID, 20, PAD_ID, PAD_ID, PAD_ID],
        [BOS_ID, 21, 22, 23, 24],
    ]
    assert batch.tgt_out.tolist() == [
        [20, EOS_ID, PAD_ID, PAD_ID, PAD_ID],
        [21, 22, 23, 24, EOS_ID],
    ]
    assert batch.src.dtype == batch.tgt_in.dtype == torch.long
    assert batch.src_tokens == 6 and batch.tgt_tokens == 7


def test_resolve_path_prefers_plain_then_gzip(tmp_path):
    prefix = str(tmp_path / "train")
    assert resolve_path(prefix, "de") == tmp_path / "train.de"  # neither: the plain name
    (tmp_path / "train.de.gz").write_bytes(gzip.compress(b"x\n"))
    assert resolve_path(prefix, "de") == tmp_path / "train.de.gz"
    (tmp_path / "train.de").write_text("x\n", encoding="utf-8")
    assert resolve_path(prefix, "de") == tmp_path / "train.de"
