"""Search: greedy and beam search agree where they must, and respect batching and length limits."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from tfcli.config import DecodeConfig
from tfcli.data.tokenizer import BOS_ID, EOS_ID, PAD_ID
from tfcli.translation.search import beam_search, greedy_search, length_penalty, max_lengths, search

LENGTHS = [5, 1, 8, 3]


def sequence_logprob(model, src_row: torch.Tensor, tokens: list[int]) -> float:
    """log P(tokens + EOS | src) by teacher forcing; src_row is (S,) possibly with PAD."""
    src = src_row[src_row != PAD_ID][None]  # (1, S')
    tgt_in = torch.tensor([[BOS_ID, *tokens]])
    tgt_out = torch.tensor([[*tokens, EOS_ID]])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(src, tgt_in).double(), -1)  # (1, T, V)
    return logprobs.gather(2, tgt_out[:, :, None]).sum().item()


def test_length_penalty_formula():
    assert length_penalty(7, 0.0) == 1.0
    assert length_penalty(1, 1.0) == pytest.approx(1.0)
    assert length_penalty(5, 0.6) == pytest.approx((10 / 6) ** 0.6)
    assert length_penalty(20, 0.6) > length_penalty(10, 0.6)


def test_max_lengths_formula(random_src):
    src = random_src([4, 10, 0])
    assert max_lengths(src, 1.5, 3, limit=100).tolist() == [9, 18, 3]
    assert max_lengths(src, 1.5, 3, limit=12).tolist() == [9, 12, 3]


def test_beam_one_equals_greedy(tiny_model, random_src):
    src = random_src(LENGTHS)
    greedy = greedy_search(tiny_model, src, DecodeConfig(beam=1, max_len_a=1.5, max_len_b=4))
    beam = beam_search(
        tiny_model, src, DecodeConfig(beam=1, length_penalty=0.0, max_len_a=1.5, max_len_b=4)
    )
    assert [h[0].tokens for h in beam] == [h[0].tokens for h in greedy]
    for b, g in zip(beam, greedy):
        assert b[0].score == pytest.approx(g[0].score, abs=1e-4)


def test_search_dispatches_on_beam_size(tiny_model, random_src):
    src = random_src(LENGTHS)
    greedy, beam = DecodeConfig(beam=1), DecodeConfig(beam=3, n_best=2)
    assert search(tiny_model, src, greedy) == greedy_search(tiny_model, src, greedy)
    assert search(tiny_model, src, beam) == beam_search(tiny_model, src, beam)


def test_n_best_sorted_by_score(tiny_model, random_src):
    src = random_src(LENGTHS)
    result = beam_search(tiny_model, src, DecodeConfig(beam=4, n_best=4, max_len_b=4))
    assert len(result) == len(LENGTHS)
    for hyps in result:
        assert len(hyps) == 4
        scores = [h.score for h in hyps]
        assert all(math.isfinite(s) for s in scores)
        assert scores == sorted(scores, reverse=True)
        assert len({tuple(h.tokens) for h in hyps}) == 4  # distinct hypotheses


def test_result_independent_of_the_rest_of_the_batch(tiny_model, random_src):
    src = random_src(LENGTHS, seed=2)
    beam = DecodeConfig(beam=4, n_best=2, max_len_b=4)
    batched = beam_search(tiny_model, src, beam)
    for row, n in enumerate(LENGTHS):
        alone = beam_search(tiny_model, src[row : row + 1, : n + 1], beam)
        assert [h.tokens for h in alone[0]] == [h.tokens for h in batched[row]]
        for a, b in zip(alone[0], batched[row]):
            assert a.score == pytest.approx(b.score, abs=1e-4)
    greedy_cfg = DecodeConfig(beam=1, max_len_b=4)
    greedy = greedy_search(tiny_model, src, greedy_cfg)
    for row, n in enumerate(LENGTHS):
        alone = greedy_search(tiny_model, src[row : row + 1, : n + 1], greedy_cfg)
        assert alone[0][0].tokens == greedy[row][0].tokens


@pytest.mark.parametrize("beam", [1, 3])
def test_output_respects_max_length(tiny_model, random_src, beam):
    src = random_src(LENGTHS)
    a, b = 0.5, 2
    result = search(tiny_model, src, DecodeConfig(beam=beam, max_len_a=a, max_len_b=b, n_best=beam))
    for hyps, n in zip(result, LENGTHS):
        for h in hyps:
            assert len(h.tokens) + 1 <= int(a * n + b)  # + 1: the EOS
            assert EOS_ID not in h.tokens and PAD_ID not in h.tokens


def test_greedy_score_is_the_log_probability(overfit):
    src = overfit.batch.src
    for row, hyps in enumerate(greedy_search(overfit.model, src, DecodeConfig(beam=1))):
        expected = sequence_logprob(overfit.model, src[row], hyps[0].tokens)
        assert hyps[0].score == pytest.approx(expected, abs=1e-4)


def test_score_of_output_cut_at_the_limit_includes_eos(tiny_model, random_src):
    """A random model rarely ends by itself: its outputs end with a forced EOS at the length
    limit, and that EOS must cost its real log-probability, as a chosen EOS does."""
    src = random_src(LENGTHS)
    greedy = DecodeConfig(beam=1, max_len_b=4)
    for row, hyps in enumerate(greedy_search(tiny_model, src, greedy)):
        expected = sequence_logprob(tiny_model, src[row], hyps[0].tokens)
        assert hyps[0].score == pytest.approx(expected, abs=1e-4)


def test_beam_score_is_normalized_log_probability(tiny_model, random_src):
    src = random_src(LENGTHS)
    alpha = 0.6
    decode = DecodeConfig(beam=3, length_penalty=alpha, max_len_b=4, n_best=3)
    result = beam_search(tiny_model, src, decode)
    for row, hyps in enumerate(result):
        for h in hyps:
            expected = sequence_logprob(tiny_model, src[row], h.tokens)
            expected /= length_penalty(len(h.tokens) + 1, alpha)
            assert h.score == pytest.approx(expected, abs=1e-4)


def test_beam_recovers_memorised_targets(overfit):
    hyps = beam_search(overfit.model, overfit.batch.src, DecodeConfig(beam=4, n_best=1))
    assert [h[0].tokens for h in hyps] == overfit.targets


def exhaustive_search(model, src_row: torch.Tensor, limit: int, alpha: float):
    """Every output of at most `limit` tokens with EOS (PAD and BOS are never produced), scored
    as beam search scores: log-probability / length_penalty; best first."""
    vocab = model.decoder.output.weight.size(0)
    words = [i for i in range(vocab) if i not in (PAD_ID, BOS_ID, EOS_ID)]
    scored = []
    for n in range(limit):  # n tokens, then EOS
        for tokens in itertools.product(words, repeat=n):
            logprob = sequence_logprob(model, src_row, list(tokens))
            scored.append((logprob / length_penalty(n + 1, alpha), list(tokens)))
    return sorted(scored, key=lambda s: -s[0])


TINY_VOCAB = 6  # PAD, UNK, BOS, EOS and two words: three tokens to choose from, and EOS


@pytest.fixture(scope="module")
def tiny_vocab_model(model_cfg, make_model):
    return make_model(model_cfg, seed=3, vocab=TINY_VOCAB)


def test_a_beam_wider_than_all_prefixes_finds_the_exhaustive_n_best(tiny_vocab_model, random_src):
    # 1 + 3 + 9 + 27 = 40 outputs of at most 4 tokens: beam 64 keeps every prefix alive and
    # every ended hypothesis among the finished ones, so it must rank exactly as exhaustive search
    src = random_src([3, 5], seed=4, vocab=TINY_VOCAB)
    limit, alpha, n = 4, 0.6, 10
    decode = DecodeConfig(beam=64, n_best=n, length_penalty=alpha, max_len_a=0.0, max_len_b=limit)
    for row, hyps in enumerate(beam_search(tiny_vocab_model, src, decode)):
        expected = exhaustive_search(tiny_vocab_model, src[row], limit, alpha)[:n]
        assert [h.tokens for h in hyps] == [tokens for _, tokens in expected]
        assert [h.score for h in hyps] == pytest.approx([s for s, _ in expected], abs=1e-4)


@pytest.mark.parametrize("beam", [1, 2, 4])
def test_a_narrow_beam_finds_a_real_output_no_better_than_the_best(
    tiny_vocab_model, random_src, beam
):
    src = random_src([3, 5], seed=4, vocab=TINY_VOCAB)
    limit, alpha = 4, 0.6
    decode = DecodeConfig(beam=beam, length_penalty=alpha, max_len_a=0.0, max_len_b=limit)
    for row, hyps in enumerate(beam_search(tiny_vocab_model, src, decode)):
        everything = exhaustive_search(tiny_vocab_model, src[row], limit, alpha)
        score_of = {tuple(tokens): s for s, tokens in everything}
        assert hyps[0].score == pytest.approx(score_of[tuple(hyps[0].tokens)], abs=1e-4)
        assert hyps[0].score <= everything[0][0] + 1e-4
