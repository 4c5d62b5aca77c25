"""Word alignments from attention, in the Pharaoh format (`0-0 1-2 2-1`).

A word is a run of sentencepiece pieces of which the first starts with "▁". The attention of
a translation's pieces to the source's pieces is summed into a (target word, source word)
matrix, and each target word is linked to the source word it attends to most, as fairseq's
`--print-alignment` does for its tokens. Links are `source-target` word indices (0-based),
in target order; the EOS row and column take no part.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from tfcli.translation.attention import AttentionMap

WORD_START = "\u2581"  # sentencepiece's "▁", the space before a word


def word_index(pieces: Sequence[str]) -> list[int]:
    """The word of each piece: a new word starts at every piece that begins with "▁"."""
    words, current = [], -1
    for n, piece in enumerate(pieces):
        if n == 0 or piece.startswith(WORD_START):
            current += 1
        words.append(current)
    return words


def word_attention(
    weights: torch.Tensor, src_words: Sequence[int], tgt_words: Sequence[int]
) -> torch.Tensor:
    """Piece attention (T, S) summed into words -> (target words, source words)."""
    n_src, n_tgt = max(src_words) + 1, max(tgt_words) + 1
    src_idx = torch.tensor(src_words)
    tgt_idx = torch.tensor(tgt_words)
    by_src = weights.new_zeros(weights.size(0), n_src).index_add_(1, src_idx, weights)  # (T, Ws)
    return weights.new_zeros(n_tgt, n_src).index_add_(0, tgt_idx, by_src)  # (Wt, Ws)


def align(attention: AttentionMap, layer: int | None = None, head: int | None = None) -> str:
    """The Pharaoh line of one translation: `source-target` for every target word."""
    src_pieces, tgt_pieces = attention.source_pieces[:-1], attention.target_pieces[:-1]  # no EOS
    if not src_pieces or not tgt_pieces:
        return ""
    weights = attention.select(layer, head)[:-1, :-1]  # (T, S) without the EOS row and column
    words = word_attention(weights, word_index(src_pieces), word_index(tgt_pieces))
    links = words.argmax(1).tolist()  # the source word of each target word
    return " ".join(f"{src}-{tgt}" for tgt, src in enumerate(links))
