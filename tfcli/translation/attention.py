"""The encoder-decoder attention of chosen translations, computed on a path of its own.

The search never computes attention probabilities (scaled_dot_product_attention does not
return them, and the fast path stays as it is). Here a finished hypothesis is teacher-forced
through the decoder, layer by layer as `DecoderLayer.forward` runs it, and at each layer the
weights softmax(QK^T / sqrt(E)) are computed from the cross-attention's own projections:
the weights the search saw when it chose each token (cached and uncached decoding agree).

Notation as in layers.py: B batch rows, S source length, T target length, D d_model,
H heads, E head size; Y decoder layers. Every map has a row per target piece and for the
final EOS, a column per source piece and for the source EOS.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from tfcli.data.batching import pad, pad_sources, token_batches
from tfcli.data.tokenizer import BOS_ID, EOS_ID, Tokenizer
from tfcli.model.kernels import precision_scope
from tfcli.model.layers import MultiHeadAttention
from tfcli.model.transformer import Transformer
from tfcli.translation.translator import TextHypothesis, Translator


@dataclass(frozen=True)
class AttentionMap:
    """The encoder-decoder attention of one translation, every layer and head.

    weights: (Y, H, T, S) float32; row t is what the decoder attended to when it produced
    target piece t (the last row: EOS); each row sums to 1.
    """

    source_pieces: list[str]  # S: the source's subwords, then "</s>"
    target_pieces: list[str]  # T: the translation's subwords, then "</s>"
    weights: torch.Tensor

    def select(self, layer: int | None = None, head: int | None = None) -> torch.Tensor:
        """One (T, S) map: decoder layer `layer` (1-based; None: the last), head `head`
        (1-based; None: the mean over heads)."""
        per_layer = self.weights[-1 if layer is None else layer - 1]  # (H, T, S)
        return per_layer.mean(0) if head is None else per_layer[head - 1]


def cross_attention_weights(
    attn: MultiHeadAttention, x: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """softmax(QK^T / sqrt(E)) of encoder-decoder attention, from attn's own projections.

    Shape: x (B, T, D), memory (B, S, D), mask (B, 1, 1, S) True = may attend -> (B, H, T, S)
    """
    b, t, d = x.shape
    h, e = attn.heads, attn.head_size
    q = attn.in_proj.rows(x, 0, d).view(b, t, h, e).transpose(1, 2)  # (B, H, T, E)
    k = attn.in_proj.rows(memory, d, 3 * d)[..., :d]  # (B, S, D): W_k of the fused W_k, W_v
    k = k.reshape(b, memory.size(1), h, e).transpose(1, 2)  # (B, H, S, E)
    scores = (q @ k.transpose(-1, -2)).float() / math.sqrt(e)  # (B, H, T, S)
    return scores.masked_fill(~mask, float("-inf")).softmax(-1)


@torch.inference_mode()
def teacher_forced_attention(
    model: Transformer, src: torch.Tensor, tgt_in: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run `tgt_in` (B, T) (BOS first) through the decoder over src (B, S).

    Returns the logits (B, T, V), as `model(src, tgt_in)` gives them, and the encoder-decoder
    attention weights of every decoder layer, (Y, B, H, T, S).
    """
    memory, src_mask = model.encode(src)  # (B, S, D)
    decoder = model.decoder
    x = decoder.embed(tgt_in)  # (B, T, D)
    maps: list[torch.Tensor] = []
    for layer in decoder.layers:  # as DecoderLayer.forward, with the weights taken on the way

        def cross(h: torch.Tensor, layer=layer) -> torch.Tensor:
            maps.append(cross_attention_weights(layer.cross_attn, h, memory, src_mask))
            return layer.cross_attn.attend_memory(h, memory, src_mask)

        x = layer.sub_self(x, lambda h, layer=layer: layer.self_attn(h, causal=True))
        x = layer.sub_cross(x, cross)
        x = layer.sub_ffn(x, layer.ffn)
    logits = decoder.output(decoder.final_norm(x))  # (B, T, V)
    return logits, torch.stack(maps)  # (Y, B, H, T, S)


def _pieces(tokenizer: Tokenizer, ids: Sequence[int]) -> list[str]:
    return [tokenizer.sp.id_to_piece(i) for i in ids] + [tokenizer.sp.id_to_piece(EOS_ID)]


def attention_maps(
    translator: Translator, lines: Sequence[str], hypotheses: Sequence[Sequence[TextHypothesis]]
) -> list[list[AttentionMap]]:
    """The attention map of every hypothesis of every line (none for an empty line).

    `hypotheses` are the line's translations, e.g. `translator.translate_nbest(lines)`; pairs
    are teacher-forced in batches of `settings.batch_tokens`, sorted by length.
    """
    sources = translator.encode(lines)
    pairs = [(n, k) for n, hyps in enumerate(hypotheses) if sources[n] for k in range(len(hyps))]
    sizes = [max(len(sources[n]), len(hypotheses[n][k].tokens)) + 1 for n, k in pairs]
    order = sorted(range(len(pairs)), key=lambda i: sizes[i])
    maps: list[list[AttentionMap | None]] = [[None] * len(hyps) for hyps in hypotheses]
    s = translator.settings
    for rows in token_batches(order, sizes, s.batch_tokens, s.batch_sentences):
        batch = [pairs[i] for i in rows]
        src = pad_sources([sources[n] for n, _ in batch]).to(translator.device)  # (B, S)
        tgt = [hypotheses[n][k].tokens for n, k in batch]
        tgt_in = pad(tgt, first=BOS_ID).to(translator.device)  # (B, T)
        with precision_scope(translator.device, translator.autocast_precision):
            _, weights = teacher_forced_attention(translator.model, src, tgt_in)
        weights = weights.float().cpu()  # (Y, B, H, T, S)
        for row, (n, k) in enumerate(batch):
            s_len, t_len = len(sources[n]) + 1, len(tgt[row]) + 1  # with EOS
            maps[n][k] = AttentionMap(
                _pieces(translator.src_tokenizer, sources[n]),
                _pieces(translator.tgt_tokenizer, tgt[row]),
                weights[:, row, :, :t_len, :s_len].clone(),  # (Y, H, T, S)
            )
    return [[m for m in line if m is not None] for line in maps]
