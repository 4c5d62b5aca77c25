"""Model and layers: shapes, positions, padding invariance, causality, the KV cache, training."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from conftest import random_tgt

from tfcli.config import DecodeConfig, ModelConfig
from tfcli.data.tokenizer import PAD_ID
from tfcli.model.kernels import BF16_ROWS, TOP_K_CHUNK, Linear, dropout, pad_rows_for_bf16, top_k
from tfcli.model.layers import Embeddings, sinusoid_table
from tfcli.model.transformer import Transformer, count_parameters
from tfcli.translation.search import greedy_search

V = 40


def test_shapes(tiny_model, random_src, model_cfg):
    src = random_src([5, 3, 7])  # (3, 8)
    tgt = random_tgt(3, 6)
    memory, src_mask = tiny_model.encode(src)
    assert memory.shape == (3, 8, model_cfg.d_model)
    assert src_mask.shape == (3, 1, 1, 8) and src_mask.dtype == torch.bool
    assert tiny_model.decode(tgt, memory, src_mask).shape == (3, 6, V)
    assert tiny_model(src, tgt).shape == (3, 6, V)


def test_sinusoid_table_formula():
    d = 16
    table = sinusoid_table(50, d)
    assert table.shape == (50, d)
    for pos, i in [(0, 0), (1, 0), (7, 3), (49, 7)]:
        angle = pos / 10000 ** (2 * i / d)
        assert table[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
        assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


def test_embeddings_scaled_by_sqrt_d_model():
    torch.manual_seed(0)
    emb = Embeddings(V, ModelConfig(d_model=16, heads=2, max_positions=20, dropout=0.0))
    ids = torch.tensor([[5, 6, 7]])
    expected = emb.tokens.weight[ids] * math.sqrt(16) + sinusoid_table(20, 16)[:3]
    torch.testing.assert_close(emb(ids), expected)
    torch.testing.assert_close(
        emb(ids, offset=4)[0, 0], emb.tokens.weight[5] * math.sqrt(16) + emb.positions[4]
    )


def test_embeddings_refuse_too_long_sequences():
    emb = Embeddings(V, ModelConfig(d_model=16, heads=2, max_positions=16, dropout=0.0))
    with pytest.raises(ValueError, match="max_positions"):
        emb(torch.ones(1, 17, dtype=torch.long))


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_padding_invariance(model_cfg, make_model, random_src, norm):
    model = make_model(dataclasses.replace(model_cfg, norm=norm))
    alone = random_src([4], seed=3)  # (1, 5)
    tgt = random_tgt(1, 5)
    with torch.no_grad():
        expected = model(alone, tgt)
        # The same sentence with three more PAD columns, next to two other sentences.
        others = random_src([6, 7], seed=4)  # (2, 8)
        src = torch.full((3, 8), PAD_ID, dtype=torch.long)
        src[0, :5] = alone[0]
        src[1:] = others
        got = model(src, torch.cat([tgt, random_tgt(2, 5, seed=5)]))
    torch.testing.assert_close(got[:1], expected, atol=1e-5, rtol=0)


def test_no_look_ahead(tiny_model, random_src):
    src = random_src([6, 4])
    tgt = random_tgt(2, 7)
    changed = tgt.clone()
    changed[:, 4] = (tgt[:, 4] + 1 - 4) % (V - 4) + 4  # another real token at position 4
    with torch.no_grad():
        a, b = tiny_model(src, tgt), tiny_model(src, changed)
    torch.testing.assert_close(a[:, :4], b[:, :4], atol=1e-6, rtol=0)
    assert not torch.allclose(a[:, 4:], b[:, 4:], atol=1e-4)


@pytest.mark.parametrize("norm", ["post", "pre"])
@pytest.mark.parametrize("tie", ["none", "all"])
def test_cached_decoding_equals_full_decoding(model_cfg, make_model, random_src, norm, tie):
    model = make_model(dataclasses.replace(model_cfg, norm=norm, tie_embeddings=tie))
    src = random_src([5, 2, 7])
    tgt = random_tgt(3, 6)
    with torch.no_grad():
        memory, src_mask = model.encode(src)
        full = model.decode(tgt, memory, src_mask)  # (B, T, V)
        state = model.new_state()
        steps = [model.decode(tgt[:, t : t + 1], memory, src_mask, state) for t in range(6)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=0)


def test_reordered_cache_decodes_as_the_reordered_prefixes(model_cfg, make_model, random_src):
    """Reordering the decoder state between steps (twice in a row, as beam search does when
    sentences also finish) gives the logits of a full decode over the reordered prefixes."""
    model = make_model(model_cfg)
    src = random_src([5, 2, 7])
    tgt = random_tgt(3, 6)
    first, second = torch.tensor([2, 0, 2]), torch.tensor([1, 2])  # rows after step 3
    with torch.no_grad():
        memory, src_mask = model.encode(src)
        state = model.new_state()
        for t in range(3):
            model.decode(tgt[:, t : t + 1], memory, src_mask, state)
        state.select_sentences(first)  # one hypothesis per sentence: rows are sentences
        state.select_sentences(second)
        rows = first[second]  # the source sentence of each remaining row
        prefix = torch.cat([tgt[rows, :3], tgt[:2, 3:]], 1)  # old prefixes, new continuations
        steps = [
            model.decode(prefix[:, t : t + 1], memory[rows], src_mask[rows], state)
            for t in range(3, 6)
        ]
        full = model.decode(prefix, memory[rows], src_mask[rows])[:, 3:]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=0)


def test_beams_sharing_one_source_row_decode_as_with_a_copy_per_beam(
    model_cfg, make_model, random_src
):
    model = make_model(model_cfg)
    src = random_src([5, 2, 7])
    beams = 4
    tgt = random_tgt(3 * beams, 6)  # rows n*4 .. n*4+3 belong to sentence n
    with torch.no_grad():
        memory, src_mask = model.encode(src)  # (3, S, D)
        copied = model.decode(
            tgt, memory.repeat_interleave(beams, 0), src_mask.repeat_interleave(beams, 0)
        )
        shared = model.decode(tgt, memory, src_mask)
        state = model.new_state(beams)
        steps = [model.decode(tgt[:, t : t + 1], memory, src_mask, state) for t in range(6)]
    torch.testing.assert_close(shared, copied, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.cat(steps, 1), copied, atol=1e-5, rtol=0)


def test_tied_embeddings_share_storage(model_cfg, make_model):
    def ptrs(model: Transformer) -> tuple[int, int, int]:
        return (
            model.encoder.embed.tokens.weight.data_ptr(),
            model.decoder.embed.tokens.weight.data_ptr(),
            model.decoder.output.weight.data_ptr(),
        )

    src, tgt, out = ptrs(make_model(dataclasses.replace(model_cfg, tie_embeddings="all")))
    assert src == tgt == out
    src, tgt, out = ptrs(make_model(dataclasses.replace(model_cfg, tie_embeddings="decoder")))
    assert tgt == out and src != tgt
    src, tgt, out = ptrs(make_model(dataclasses.replace(model_cfg, tie_embeddings="none")))
    assert len({src, tgt, out}) == 3


def test_tying_reduces_parameter_count(model_cfg, make_model):
    counts = {
        tie: count_parameters(make_model(dataclasses.replace(model_cfg, tie_embeddings=tie)))
        for tie in ("none", "decoder", "all")
    }
    d = model_cfg.d_model
    assert counts["none"] - counts["decoder"] == V * d
    assert counts["decoder"] - counts["all"] == V * d


def test_tie_all_needs_one_vocabulary(model_cfg):
    with pytest.raises(ValueError):
        Transformer(dataclasses.replace(model_cfg, tie_embeddings="all"), 30, 40)
    Transformer(dataclasses.replace(model_cfg, tie_embeddings="decoder"), 30, 40)


def test_dropout_only_in_train_mode(tiny_model, random_src):
    src, tgt = random_src([5, 3]), random_tgt(2, 4)
    with torch.no_grad():
        tiny_model.train()
        a, b = tiny_model(src, tgt), tiny_model(src, tgt)
        assert not torch.allclose(a, b)
        tiny_model.eval()
        c, d = tiny_model(src, tgt), tiny_model(src, tgt)
        assert torch.equal(c, d)


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_dropout_keeps_1_minus_p_of_every_lane_scaled(p):
    torch.manual_seed(0)
    x = torch.ones(1000, 1000, requires_grad=True)
    y = dropout(x, p, training=True)
    kept = y != 0
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / (1 - p)))
    # four mask values come from each 64-bit draw: every one of the four must be fair
    for lane in range(4):
        share = kept.view(-1)[lane::4].float().mean().item()
        assert abs(share - (1 - p)) < 0.005, (lane, share)
    y.backward(torch.ones_like(y))
    torch.testing.assert_close(x.grad, y.detach())  # the gradient goes through the same mask


def test_dropout_follows_the_seed_keeps_dtype_and_is_off_in_eval():
    x = torch.randn(3, 5, 7).bfloat16()
    torch.manual_seed(3)
    a = dropout(x, 0.2, training=True)
    torch.manual_seed(3)
    b = dropout(x, 0.2, training=True)
    assert torch.equal(a, b) and a.dtype == torch.bfloat16 and not torch.equal(a, x)
    assert dropout(x, 0.2, training=False) is x and dropout(x, 0.0, training=True) is x
    assert torch.equal(dropout(x, 1.0, training=True), torch.zeros_like(x))


@pytest.mark.parametrize("vocab", [8000, 8003, 300])
@pytest.mark.parametrize("k", [1, 8])
def test_top_k_equals_torch_topk(vocab, k):
    torch.manual_seed(0)
    x = torch.randn(6, vocab)
    x[1, 40 : 40 + k] += 100.0  # the whole top k in one chunk
    x[2] = float("-inf")
    x[2, vocab - 1] = 0.0  # one finite entry, in the last (padded) chunk
    x[3, [5, 3 * TOP_K_CHUNK + 1]] = 50.0  # the best value twice, in two chunks
    values, ids = top_k(x, k)
    want_values, want_ids = x.topk(k, dim=1)
    assert torch.equal(values, want_values)
    assert torch.equal(x.gather(1, ids), values)  # each index holds its value
    assert torch.equal(ids[[0, 1, 4, 5]], want_ids[[0, 1, 4, 5]])  # distinct values: same ids
    assert ids[2, 0] == vocab - 1
    assert set(ids[3, :2].tolist()) <= {5, 3 * TOP_K_CHUNK + 1}


def test_overfits_one_batch(overfit):
    assert overfit.last_loss < 0.1 * overfit.first_loss
    hyps = greedy_search(overfit.model, overfit.batch.src, DecodeConfig(beam=1))
    assert [h[0].tokens for h in hyps] == overfit.targets


def test_bf16_training_pads_matmul_rows_to_few_shapes_without_changing_results(monkeypatch):
    seen: list[int] = []
    real_linear = torch.nn.functional.linear

    def spy(x, weight, bias=None):
        seen.append(x.size(0))
        return real_linear(x, weight, bias)

    torch.manual_seed(0)
    layer = Linear(8, 4)
    x = torch.randn(3, 5, 8, requires_grad=True)  # 15 rows
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = real_linear(x, layer.weight, layer.bias)
        monkeypatch.setattr(torch.nn.functional, "linear", spy)
        got = layer(x)
        with torch.no_grad():  # translating: no padding
            layer(x)
    assert seen == [BF16_ROWS, 3]  # padded while training; (3, 5, 8) as it is without grad
    assert got.shape == (3, 5, 4)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    (grad_got,) = torch.autograd.grad(got.float().sum(), [x])
    (grad_want,) = torch.autograd.grad(expected.float().sum(), [x])
    torch.testing.assert_close(grad_got, grad_want, rtol=0, atol=0)
    assert not pad_rows_for_bf16(x)  # outside autocast: fp32, never padded
