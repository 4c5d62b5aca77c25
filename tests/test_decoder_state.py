"""The decoder state: step-by-step decoding with reordered hypotheses and dropped sentences
gives what a full decode over the same prefixes gives."""

from __future__ import annotations

import torch
from conftest import random_tgt

V = 40


def test_length_counts_the_positions_decoded(tiny_model, random_src):
    src = random_src([3, 5])
    memory, src_mask = tiny_model.encode(src)
    state = tiny_model.new_state()
    assert state.length == 0
    with torch.no_grad():
        for t in range(3):
            tiny_model.decode(random_tgt(2, 1, seed=t), memory, src_mask, state)
            assert state.length == t + 1


def test_reorder_continues_other_hypotheses_of_the_same_sentence(tiny_model, random_src):
    """Beam search: two hypotheses per sentence share its source row; after a reorder each
    row continues the prefix of the hypothesis it was given."""
    src = random_src([5, 2, 7])
    beams = 2
    tgt = random_tgt(3 * beams, 6)  # rows 2n, 2n+1 belong to sentence n
    rows = torch.tensor([1, 1, 2, 3, 5, 4])  # each row stays within its sentence
    with torch.no_grad():
        memory, src_mask = tiny_model.encode(src)
        state = tiny_model.new_state(beams)
        for t in range(3):
            tiny_model.decode(tgt[:, t : t + 1], memory, src_mask, state)
        state.reorder(rows)
        prefix = torch.cat([tgt[rows, :3], tgt[:, 3:]], 1)  # old prefixes, new continuations
        steps = [
            tiny_model.decode(prefix[:, t : t + 1], memory, src_mask, state) for t in (3, 4, 5)
        ]
        full = tiny_model.decode(prefix, memory, src_mask)[:, 3:]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=0)


def test_select_sentences_drops_their_hypotheses_and_source_rows(tiny_model, random_src):
    src = random_src([5, 2, 7])
    beams = 2
    tgt = random_tgt(3 * beams, 5)
    keep = torch.tensor([0, 2])  # sentence 1 has finished
    kept_rows = torch.tensor([0, 1, 4, 5])
    with torch.no_grad():
        memory, src_mask = tiny_model.encode(src)
        state = tiny_model.new_state(beams)
        for t in range(2):
            tiny_model.decode(tgt[:, t : t + 1], memory, src_mask, state)
        state.reorder(torch.tensor([1, 0, 2, 3, 4, 5]))  # a reorder pending, then the drop
        state.select_sentences(keep)
        order = torch.tensor([1, 0, 2, 3, 4, 5])[kept_rows]
        prefix = torch.cat([tgt[order, :2], tgt[kept_rows, 2:]], 1)
        m, mask = memory[keep], src_mask[keep]
        steps = [tiny_model.decode(prefix[:, t : t + 1], m, mask, state) for t in (2, 3, 4)]
        full = tiny_model.decode(prefix, m, mask)[:, 2:]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=0)
