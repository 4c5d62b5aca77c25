"""The parts of the Transformer, named as in "Attention Is All You Need".

Notation (shape comments):
    B batch, S source length, T target length, L length of whichever sequence a layer sees,
    D d_model, H heads, K head size (D // H), F feed-forward width, V vocabulary.

Masks are bool with True = "may attend" (the convention of scaled_dot_product_attention) and
are made in model.py only. Decoder self-attention uses `causal=True` instead of a mask.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from tfcli.device import pad_rows_for_bf16, padded_rows

# A layer's key/value cache during incremental decoding.
#   self-attention:  {"kv": (B, L, 2, H, K)} keys and values of every position so far, and
#                    "order" (B,), rows still to select (see append_keys_values)
#   cross-attention: {"k": (B', H, S, K), "v": (B', H, S, K)}, the projected encoder output
KVCache = dict[str, torch.Tensor]


def append_keys_values(cache: KVCache, kv: torch.Tensor) -> torch.Tensor:
    """Append this step's keys and values kv (B, L, 2, H, K) to a self-attention cache and
    return all of them, (B, T, 2, H, K).

    Beam search reorders the cache rows after every step; model.reorder_cache only records the
    order ("order"), and it is applied here, in the same copy that makes room for the new
    position (one pass over the cache per step, not a concatenation plus a reordering).
    """
    past, order = cache.get("kv"), cache.pop("order", None)
    if past is None:
        out = kv.contiguous()
    else:
        t = past.size(1)
        out = kv.new_empty((kv.size(0), t + kv.size(1), *kv.shape[2:]))
        if order is None:
            out[:, :t] = past
        else:
            torch.index_select(past, 0, order, out=out[:, :t])
        out[:, t:] = kv
    cache["kv"] = out
    return out


def sinusoid_table(positions: int, d_model: int) -> torch.Tensor:
    """The paper's positional encodings: PE[p, 2i] = sin(p / 10000^(2i/D)), PE[p, 2i+1] = cos(...).

    Shape: (positions, D)
    """
    pos = torch.arange(positions, dtype=torch.float64)[:, None]  # (P, 1)
    inv = torch.exp(-math.log(10000.0) * torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    table = torch.zeros(positions, d_model, dtype=torch.float64)
    table[:, 0::2] = torch.sin(pos * inv)
    table[:, 1::2] = torch.cos(pos * inv)
    return table.float()


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """F.linear; for bf16 training on the CPU over rows padded to few shapes (device.py).

    Shape: x (..., in), weight (out, in) -> (..., out)
    """
    if not pad_rows_for_bf16(x):
        return F.linear(x, weight, bias)
    rows = x.reshape(-1, x.size(-1))  # (M, in)
    out = F.linear(F.pad(rows, (0, 0, 0, padded_rows(rows))), weight, bias)  # (M + pad, out)
    return out[: rows.size(0)].reshape(*x.shape[:-1], weight.size(0))


class Linear(nn.Linear):
    """nn.Linear through `linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout: zero each element with probability p, scale the rest by 1 / (1 - p).

    On the CPU the keep mask comes from 16-bit random numbers, four to each 64-bit draw of
    PyTorch's generator (so it follows torch.manual_seed), with p rounded to a multiple of
    1/65536: forward and backward take half the time of F.dropout, whose Bernoulli draw per
    element was 15% of a bf16 training step. Elsewhere (CUDA), F.dropout.
    """
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or p >= 1.0:
        return F.dropout(x, p, training=True)
    n = x.numel()
    draws = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(2**63), None)  # all 64 bits
    lanes = draws.view(torch.int16)[:n].view(x.shape)  # uniform over -32768 .. 32767
    keep = lanes >= round(p * 65536) - 32768  # P(keep) = 1 - p
    return x * torch.where(keep, 1.0 / (1.0 - p), 0.0).to(x.dtype)


class Dropout(nn.Module):
    """`dropout` as a module (active in training mode), in place of nn.Dropout."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Embeddings(nn.Module):
    """Token embeddings scaled by sqrt(D), plus sinusoidal positions, then dropout."""

    def __init__(self, vocab: int, d_model: int, max_positions: int, dropout: float) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab, d_model, padding_idx=0)
        nn.init.normal_(self.tokens.weight, mean=0.0, std=d_model**-0.5)
        with torch.no_grad():
            self.tokens.weight[0].zero_()
        self.scale = math.sqrt(d_model)
        self.register_buffer("positions", sinusoid_table(max_positions, d_model), persistent=False)
        self.dropout = Dropout(dropout)

    def forward(self, ids: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """ids: (B, L) -> (B, L, D); `offset` is the position of the first token."""
        length = ids.size(1)
        if offset + length > self.positions.size(0):
            raise ValueError(
                f"sequence of {offset + length} tokens exceeds model.max_positions "
                f"({self.positions.size(0)})"
            )
        x = self.tokens(ids) * self.scale  # (B, L, D)
        return self.dropout(x + self.positions[offset : offset + length])


class MultiHeadAttention(nn.Module):
    """Scaled dot-product attention over H heads with query/key/value and output projections.

    One (3D, D) input projection holds W_q, W_k and W_v: self-attention applies it in one fused
    matmul; encoder-decoder attention applies W_q to the decoder states and W_k, W_v (fused) to
    the encoder output, which is projected once per sentence and cached.
    """

    def __init__(self, d_model: int, heads: int, dropout: float, cross: bool = False) -> None:
        super().__init__()
        self.heads, self.head_dim, self.cross = heads, d_model // heads, cross
        self.in_proj = Linear(d_model, 3 * d_model)
        self.out_proj = Linear(d_model, d_model)
        self.dropout = dropout
        for lin in (self.in_proj, self.out_proj):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def _split(self, x: torch.Tensor, n: int) -> torch.Tensor:
        """(B, L, n*D) -> (n, B, H, L, K)"""
        b, length, _ = x.shape
        return x.view(b, length, n, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        causal: bool = False,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """Attend from x (B, L, D) to itself, or to `memory` (B, S, D) when cross-attention.

        mask: bool, broadcastable to (B, H, L, L_keys), True = may attend.
        cache: self-attention appends this step's keys/values to it; cross-attention fills it
        once and reuses it. With a cache, self-attention sees one new token at a time.
        Cross-attention: x may have G rows per `memory` row (beam search: (B'*G, L, D) against
        (B', S, D)), row n*G + g attending to memory row n.
        """
        b, length, d = x.shape
        if not self.cross:
            qkv = self.in_proj(x).view(b, length, 3, self.heads, self.head_dim)
            kv = qkv[:, :, 1:]  # (B, L, 2, H, K)
            if cache is not None:
                if "kv" in cache:
                    causal = False  # one new query attends to every cached position
                kv = append_keys_values(cache, kv)  # (B, L_past + L, 2, H, K)
            q = qkv[:, :, 0].transpose(1, 2)  # (B, H, L, K)
            k, v = kv[:, :, 0].transpose(1, 2), kv[:, :, 1].transpose(1, 2)  # (B, H, L_keys, K)
        else:
            w, bias = self.in_proj.weight, self.in_proj.bias
            if cache is not None and "k" in cache:
                k, v = cache["k"], cache["v"]  # (B', H, S, K)
            else:
                assert memory is not None, "cross-attention needs the encoder output"
                k, v = self._split(linear(memory, w[d:], bias[d:]), 2)  # each (B', H, S, K)
                if cache is not None:
                    cache["k"], cache["v"] = k, v
            # B = G * B': rows n*G .. n*G+G-1 (the beams of sentence n) share source n, so they
            # attend to its keys/values as G*L query positions of one row, read once, not G times.
            rows = k.size(0)
            x = x.reshape(rows, b // rows * length, d)  # (B', G*L, D)
            q = self._split(linear(x, w[:d], bias[:d]), 1)[0]  # (B', H, G*L, K)
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=causal and mask is None,
        )  # (B, H, L, K)
        out = out.transpose(1, 2).reshape(b, length, d)  # (B, L, D); cross: (B'G, L, D)
        return self.out_proj(out)


class FeedForward(nn.Module):
    """Position-wise FFN: Linear(D, F), activation, Linear(F, D)."""

    def __init__(self, d_model: int, d_ff: int, activation: str) -> None:
        super().__init__()
        self.fc1 = Linear(d_model, d_ff)
        self.fc2 = Linear(d_ff, d_model)
        self.act = nn.GELU() if activation == "gelu" else nn.ReLU()
        for lin in (self.fc1, self.fc2):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))  # (B, L, F) -> (B, L, D)


class Sublayer(nn.Module):
    """Residual connection with layer norm: post-norm LN(x + f(x)) or pre-norm x + f(LN(x))."""

    def __init__(self, d_model: int, dropout: float, pre_norm: bool) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.dropout = Dropout(dropout)
        self.pre_norm = pre_norm

    def forward(self, x: torch.Tensor, f) -> torch.Tensor:
        if self.pre_norm:
            return x + self.dropout(f(self.norm(x)))
        return self.norm(x + self.dropout(f(x)))


class EncoderLayer(nn.Module):
    """Self-attention, then feed-forward, each in a residual sublayer."""

    def __init__(self, d_model, heads, d_ff, dropout, attn_dropout, pre_norm, activation) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, heads, attn_dropout)
        self.ffn = FeedForward(d_model, d_ff, activation)
        self.sub_attn = Sublayer(d_model, dropout, pre_norm)
        self.sub_ffn = Sublayer(d_model, dropout, pre_norm)

    def forward(self, x: torch.Tensor, src_mask: torch.Tensor) -> torch.Tensor:
        """x: (B, S, D), src_mask: (B, 1, 1, S) -> (B, S, D)"""
        x = self.sub_attn(x, lambda h: self.self_attn(h, mask=src_mask))
        return self.sub_ffn(x, self.ffn)


class DecoderLayer(nn.Module):
    """Masked self-attention, encoder-decoder attention, feed-forward."""

    def __init__(self, d_model, heads, d_ff, dropout, attn_dropout, pre_norm, activation) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, heads, attn_dropout)
        self.cross_attn = MultiHeadAttention(d_model, heads, attn_dropout, cross=True)
        self.ffn = FeedForward(d_model, d_ff, activation)
        self.sub_self = Sublayer(d_model, dropout, pre_norm)
        self.sub_cross = Sublayer(d_model, dropout, pre_norm)
        self.sub_ffn = Sublayer(d_model, dropout, pre_norm)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        src_mask: torch.Tensor,
        cache: dict[str, KVCache] | None = None,
    ) -> torch.Tensor:
        """x: (B, T, D), memory: (B, S, D), src_mask: (B, 1, 1, S) -> (B, T, D)"""
        self_cache = cache["self"] if cache is not None else None
        cross_cache = cache["cross"] if cache is not None else None
        x = self.sub_self(x, lambda h: self.self_attn(h, causal=True, cache=self_cache))
        x = self.sub_cross(
            x, lambda h: self.cross_attn(h, memory, mask=src_mask, cache=cross_cache)
        )
        return self.sub_ffn(x, self.ffn)
