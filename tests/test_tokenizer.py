"""Tokenizer: fixed special ids, round trips, and errors that name the file."""

from __future__ import annotations

import pytest

from tfcli.config import TokenizerConfig
from tfcli.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Tokenizer, train_tokenizer
from tfcli.errors import DataError


def test_special_ids(tokenizer):
    assert (PAD_ID, UNK_ID, BOS_ID, EOS_ID) == (0, 1, 2, 3)
    sp = tokenizer.sp
    assert (sp.pad_id(), sp.unk_id(), sp.bos_id(), sp.eos_id()) == (0, 1, 2, 3)


def test_encode_adds_no_specials(tokenizer, corpus):
    ids = tokenizer.encode(corpus[0][:5] + corpus[1][:5])
    assert all(ids) and all(i > EOS_ID for seq in ids for i in seq)


def test_round_trip(tokenizer, corpus):
    src, tgt = corpus
    lines = [src[0], tgt[0], src[-1], tgt[-1]]
    assert [tokenizer.decode(ids) for ids in tokenizer.encode(lines)] == lines


def test_decode_skips_special_ids(tokenizer, corpus):
    ids = tokenizer.encode([corpus[1][3]])[0]
    assert tokenizer.decode([BOS_ID, *ids, EOS_ID, PAD_ID, PAD_ID]) == corpus[1][3]


def test_bytes_round_trip(tokenizer, corpus, tmp_path):
    path = tmp_path / "spm.model"
    tokenizer.save(path)
    loaded = Tokenizer.load(path)
    assert loaded.model_bytes == tokenizer.model_bytes
    assert len(loaded) == len(tokenizer)
    assert loaded.encode(corpus[0]) == tokenizer.encode(corpus[0])


def test_vocabulary_too_large_for_the_data_is_reduced(corpus):
    tok = train_tokenizer(corpus[1][:20], TokenizerConfig(vocab_size=5000))
    assert 16 <= len(tok) < 5000
    assert tok.decode(tok.encode([corpus[1][0]])[0]) == corpus[1][0]


def test_no_text_to_train_on():
    with pytest.raises(DataError):
        train_tokenizer(["", "   "], TokenizerConfig(vocab_size=32))


def test_bytes_that_are_not_a_model():
    with pytest.raises(DataError, match="sentencepiece"):
        Tokenizer(b"this is not a sentencepiece model")


def test_load_file_that_is_not_a_model(tmp_path):
    path = tmp_path / "bogus.model"
    path.write_bytes(b"\x00\x01 not a model")
    with pytest.raises(DataError, match="bogus.model"):
        Tokenizer.load(path)


def test_load_missing_file_names_path(tmp_path):
    path = tmp_path / "missing.model"
    with pytest.raises(DataError) as e:
        Tokenizer.load(path)
    assert str(path) in str(e.value)
