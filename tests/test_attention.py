"""Attention maps of translations and the word alignments taken from them."""

from __future__ import annotations

import json
import random

import pytest
import torch
from conftest import random_tgt
from typer.testing import CliRunner

from tfcli.cli import app
from tfcli.config import DecodeConfig, TokenizerConfig
from tfcli.data.batching import pad, pad_sources
from tfcli.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, train_tokenizer
from tfcli.model.transformer import Transformer
from tfcli.translation.alignment import align, word_attention, word_index
from tfcli.translation.attention import (
    attention_maps,
    cross_attention_weights,
    teacher_forced_attention,
)
from tfcli.translation.translator import Translator

WORDS = [
    "apple",
    "river",
    "stone",
    "cloud",
    "tiger",
    "lemon",
    "piano",
    "forest",
    "candle",
    "rocket",
    "violet",
    "garden",
]


def test_teacher_forcing_gives_the_models_logits_and_rows_that_sum_to_one(tiny_model, random_src):
    src = random_src([7, 3, 5])
    tgt = random_tgt(3, 6)
    logits, weights = teacher_forced_attention(tiny_model, src, tgt)
    torch.testing.assert_close(logits, tiny_model(src, tgt))
    layers, heads = tiny_model.cfg.decoder_layers, tiny_model.cfg.heads
    assert weights.shape == (layers, 3, heads, 6, src.size(1))
    torch.testing.assert_close(weights.sum(-1), torch.ones(layers, 3, heads, 6))
    assert weights[:, 1, :, :, 4:].abs().max() == 0  # padding gets no attention


def test_the_weights_are_the_ones_the_attention_layer_applies(tiny_model, random_src):
    """weights @ V through the output projection is what attend_memory returns."""
    src = random_src([6, 4])
    attn = tiny_model.decoder.layers[1].cross_attn
    memory, mask = tiny_model.encode(src)
    x = torch.randn(2, 5, tiny_model.cfg.d_model, generator=torch.Generator().manual_seed(3))
    weights = cross_attention_weights(attn, x, memory, mask)  # (B, H, T, S)
    d, h, e = attn.in_proj.weight.size(1), attn.heads, attn.head_size
    v = torch.nn.functional.linear(memory, attn.in_proj.weight[2 * d :], attn.in_proj.bias[2 * d :])
    v = v.view(2, src.size(1), h, e).transpose(1, 2)  # (B, H, S, E)
    out = (weights @ v).transpose(1, 2).reshape(2, 5, d)  # (B, T, D)
    with torch.no_grad():
        torch.testing.assert_close(attn.out_proj(out), attn.attend_memory(x, memory, mask))


def test_a_sentence_gets_the_same_map_alone_and_in_a_batch(tiny_model, random_src):
    src = random_src([7, 3, 5])
    tgt = random_tgt(3, 6)
    _, together = teacher_forced_attention(tiny_model, src, tgt)
    _, alone = teacher_forced_attention(tiny_model, src[1:2, :4], tgt[1:2])
    torch.testing.assert_close(together[:, 1:2, :, :, :4], alone)


def test_words_start_at_pieces_with_the_space_mark():
    assert word_index(["▁Das", "▁Ha", "us", "▁ist", "."]) == [0, 1, 1, 2, 2]
    assert word_index(["x", "y", "▁z"]) == [0, 0, 1]


def test_subword_attention_is_summed_into_words():
    weights = torch.tensor([[0.1, 0.2, 0.7], [0.5, 0.25, 0.25], [0.0, 1.0, 0.0]])  # (T, S)
    words = word_attention(weights, src_words=[0, 1, 1], tgt_words=[0, 0, 1])
    torch.testing.assert_close(words, torch.tensor([[0.6, 1.4], [0.0, 1.0]]))


@pytest.fixture(scope="module")
def copy_translator(overfit) -> Translator:
    """A tiny model trained to copy its input, sentences of distinct words, a piece each; of
    the memorising model's shape (1+1 layers, width 32, no dropout)."""
    rng = random.Random(0)
    tok = train_tokenizer(
        [" ".join(rng.sample(WORDS, 6)) for _ in range(100)], TokenizerConfig(vocab_size=35)
    )
    torch.manual_seed(0)
    model = Transformer(overfit.model.cfg, len(tok), len(tok))
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    for _ in range(600):
        batch = tok.encode([" ".join(rng.sample(WORDS, rng.randint(3, 7))) for _ in range(32)])
        logits = model(pad_sources(batch), pad(batch, first=BOS_ID))  # (B, T, V)
        target = pad(batch, last=EOS_ID).flatten()  # (B*T,)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), target, ignore_index=PAD_ID)
        opt.zero_grad()
        loss.backward()
        opt.step()
    settings = DecodeConfig(beam=1)
    return Translator(model.eval(), tok, tok, settings, torch.device("cpu"), "fp32")


def test_a_model_that_copies_its_input_aligns_on_the_diagonal(copy_translator):
    rng = random.Random(1)
    lines = [" ".join(rng.sample(WORDS, rng.randint(3, 7))) for _ in range(20)]
    hyps = copy_translator.translate_nbest(lines)
    maps = attention_maps(copy_translator, lines, hyps)
    for line, line_hyps, line_maps in zip(lines, hyps, maps):
        assert line_hyps[0].text == line
        diagonal = " ".join(f"{i}-{i}" for i in range(len(line.split())))
        assert align(line_maps[0]) == diagonal, line


def test_maps_follow_their_lines_and_an_empty_line_has_none(copy_translator):
    lines = ["apple river stone", "", "piano lemon cloud tiger"]
    hyps = copy_translator.translate_nbest(lines)
    maps = attention_maps(copy_translator, lines, hyps)
    assert [len(m) for m in maps] == [1, 0, 1]
    assert maps[0][0].source_pieces == ["▁apple", "▁river", "▁stone", "</s>"]
    assert maps[2][0].weights.shape == (1, 2, 5, 5)  # (Y, H, T, S): 4 words and EOS
    assert align(maps[2][0]) == "0-0 1-1 2-2 3-3"


# --- tfcli translate --alignment / --show-attention / --attention-out -------------------------


def invoke(*args):
    return CliRunner().invoke(app, ["translate", *map(str, args)])


def _pharaoh_links(column: str, src_words: int, tgt_words: int) -> list[tuple[int, int]]:
    links = [tuple(map(int, link.split("-"))) for link in column.split()]
    assert [t for _, t in links] == list(range(tgt_words))
    assert all(0 <= s < src_words for s, _ in links)
    return links


def test_alignment_is_a_tab_separated_column(memorized_run, overfit):
    result = invoke("-m", memorized_run, "--alignment", *overfit.sources[:2], "")
    assert result.exit_code == 0, result.output
    rows = result.stdout.splitlines()
    assert len(rows) == 3 and rows[2] == "\t"
    for row, source, expected in zip(rows[:2], overfit.sources, overfit.translations):
        text, column = row.split("\t")
        assert text == expected
        _pharaoh_links(column, len(source.split()), len(text.split()))


def test_alignment_with_an_n_best_list_aligns_every_hypothesis(memorized_run, overfit):
    result = invoke("-m", memorized_run, "--alignment", "--n-best", "2", overfit.sources[0])
    assert result.exit_code == 0, result.output
    rows = [row.split("\t") for row in result.stdout.splitlines()]
    assert [r[0] for r in rows] == ["1", "1"] and all(len(r) == 4 for r in rows)
    for _, text, _, column in rows:
        _pharaoh_links(column, len(overfit.sources[0].split()), len(text.split()))


def test_show_attention_draws_a_map_and_writes_the_matrices(memorized_run, overfit, tmp_path):
    out = tmp_path / "attention.json"
    source, translation = overfit.sources[1], overfit.translations[1]
    result = invoke("-m", memorized_run, "--show-attention", "--attention-out", out, source)
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text(encoding="utf-8"))[0]
    assert (record["source"], record["translation"]) == (source, translation)
    src_pieces, tgt_pieces = record["source_pieces"], record["target_pieces"]
    att = torch.tensor(record["attention"])  # (Y, H, T, S)
    assert att.shape == (1, 2, len(tgt_pieces), len(src_pieces))
    torch.testing.assert_close(att.sum(-1), torch.ones(att.shape[:-1]), atol=1e-4, rtol=0)

    lines = result.stdout.splitlines()
    assert lines[:3] == [
        source,
        f"→ {translation}",
        "encoder-decoder attention, layer 1 of 1, mean of 2 heads",
    ]
    width = max(map(len, tgt_pieces)) + 1
    rows, legend = lines[-1 - len(tgt_pieces) : -1], lines[-1]
    assert [row[:width].rstrip() for row in rows] == tgt_pieces  # target pieces down
    assert all(len(row) == width + 2 * len(src_pieces) for row in rows)  # two characters a cell
    assert lines[-2 - len(tgt_pieces)].split() == [p[-1] for p in src_pieces]  # pieces across
    assert legend.startswith("weights:")


def test_a_layer_or_head_the_model_lacks_is_one_line(memorized_run):
    for option, value, word in (("--layer", 2, "decoder layers"), ("--head", 3, "heads")):
        result = invoke("-m", memorized_run, "--alignment", option, value, "der hund")
        assert result.exit_code == 1
        assert (
            result.stderr.startswith(f"error: {option} {value}: the model has")
            and word in result.stderr
        )
        assert "Traceback" not in result.output
