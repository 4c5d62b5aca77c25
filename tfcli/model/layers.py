"""The parts of the Transformer, named as in "Attention Is All You Need".

Notation (shape comments; docs/ARCHITECTURE.md has the legend every file uses): B batch
rows, S source length, T target length, L length of whichever sequence a layer sees, D
d_model, H heads, E head size (D / H), F feed-forward width, V vocabulary, G target rows per
source row (the beams of a sentence; 1 outside beam search).

Masks are bool with True = "may attend" (the convention of scaled_dot_product_attention) and
are made in transformer.py only. Decoder self-attention uses `causal=True` instead of a mask.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from tfcli.config import ModelConfig
from tfcli.model.decoder_state import DecoderState
from tfcli.model.kernels import Dropout, Linear, attend_few


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


class Embeddings(nn.Module):
    """Token embeddings scaled by sqrt(D), plus sinusoidal positions, then dropout."""

    def __init__(self, vocab: int, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.tokens = nn.Embedding(vocab, d, padding_idx=0)
        nn.init.normal_(self.tokens.weight, mean=0.0, std=d**-0.5)
        with torch.no_grad():
            self.tokens.weight[0].zero_()
        self.scale = math.sqrt(d)
        self.register_buffer("positions", sinusoid_table(cfg.max_positions, d), persistent=False)
        self.dropout = Dropout(cfg.dropout)

    def forward(self, ids: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """ids: (B, L) -> (B, L, D); `offset` is the position of the first token."""
        length = ids.size(1)
        if offset + length > self.positions.size(0):
            raise ValueError(
                f"sequence of {offset + length} tokens exceeds model.max_positions "
                f"({self.positions.size(0)})"
            )
        x = self.tokens(ids) * self.scale  # (B, L, D)
        # positions stay fp32 when the weights are cast for inference: add, then cast
        return self.dropout((x + self.positions[offset : offset + length]).to(x.dtype))


class MultiHeadAttention(nn.Module):
    """Scaled dot-product attention over H heads with query/key/value and output projections.

    One (3D, D) input projection holds W_q, W_k and W_v: self-attention applies it in one fused
    matmul; encoder-decoder attention (`cross`) applies W_q to the decoder states and W_k, W_v
    (fused) to the encoder output, which is projected once per sentence.
    """

    def __init__(self, cfg: ModelConfig, cross: bool = False) -> None:
        super().__init__()
        self.heads, self.head_size, self.cross = cfg.heads, cfg.d_model // cfg.heads, cross
        self.in_proj = Linear(cfg.d_model, 3 * cfg.d_model)
        self.out_proj = Linear(cfg.d_model, cfg.d_model)
        self.dropout = cfg.attention_dropout
        for lin in (self.in_proj, self.out_proj):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def _heads(self, x: torch.Tensor, n: int) -> torch.Tensor:
        """(B, L, n*D) -> (n, B, H, L, E)"""
        b, length, _ = x.shape
        return x.view(b, length, n, self.heads, self.head_size).permute(2, 0, 3, 1, 4)

    def _attend(self, q, k, v, mask: torch.Tensor | None, causal: bool) -> torch.Tensor:
        """q (B, H, L, E), k and v (B, H, L_keys, E) -> (B, H, L, E)"""
        return F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=causal and mask is None,
        )

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        causal: bool = False,
        state: DecoderState | None = None,
        layer: int = 0,
    ) -> torch.Tensor:
        """Self-attention of x (B, L, D) -> (B, L, D).

        mask: bool, broadcastable to (B, H, L, L), True = may attend. With a decoder `state`,
        this step's keys and values join those of layer `layer`'s earlier steps.
        """
        b, length, d = x.shape
        qkv = self.in_proj(x).view(b, length, 3, self.heads, self.head_size)  # (B, L, 3, H, E)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, H, L, E)
        if state is None:
            out = self._attend(q, k, v, mask, causal)
        else:  # one new position (search) attends to every cached one
            k, v = state.append(layer, k, v)  # each (B, H, T, E)
            if length == 1:
                out = attend_few(q, k, v, mask)
            elif k.size(2) == length:  # a whole prefix at once, from an empty state
                out = self._attend(q, k, v, mask, causal)
            else:
                raise ValueError("with a decoder state, feed one new token per step")
        return self.out_proj(out.transpose(1, 2).reshape(b, length, d))  # (B, L, D)

    def attend_memory(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        mask: torch.Tensor,
        state: DecoderState | None = None,
        layer: int = 0,
    ) -> torch.Tensor:
        """Encoder-decoder attention from x (B, T, D) to memory (B/G, S, D) -> (B, T, D).

        x may have G rows per memory row (beam search), row n*G + g attending to memory
        row n. mask: (B/G, 1, 1, S), True = may attend. With a decoder `state`, the
        memory is projected to keys and values at the first step only.
        """
        b, length, d = x.shape

        def project() -> tuple[torch.Tensor, torch.Tensor]:
            k, v = self._heads(self.in_proj.rows(memory, d, 3 * d), 2)  # each (B/G, H, S, E)
            return k.contiguous(), v.contiguous()

        k, v = project() if state is None else state.cross_keys_values(layer, project)
        # The G rows of sentence n share its keys/values: they attend as G*T query positions of
        # one row, reading the memory once, not G times.
        rows = k.size(0)
        x = x.reshape(rows, b // rows * length, d)  # (B/G, G*T, D)
        q = self._heads(self.in_proj.rows(x, 0, d), 1)[0]  # (B/G, H, G*T, E)
        if state is None:
            out = self._attend(q, k, v, mask, causal=False)  # (B/G, H, G*T, E)
        else:  # a decoding step: G queries per row
            out = attend_few(q, k, v, mask)
        out = out.transpose(1, 2).reshape(b, length, d)  # (B, T, D)
        return self.out_proj(out)


class FeedForward(nn.Module):
    """Position-wise FFN: Linear(D, F), activation, Linear(F, D)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.fc1 = Linear(cfg.d_model, cfg.d_ff)
        self.fc2 = Linear(cfg.d_ff, cfg.d_model)
        self.act = nn.GELU() if cfg.activation == "gelu" else nn.ReLU()
        for lin in (self.fc1, self.fc2):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))  # (B, L, F) -> (B, L, D)


class Sublayer(nn.Module):
    """Residual connection with layer norm: post-norm LN(x + f(x)) or pre-norm x + f(LN(x))."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(cfg.d_model)
        self.dropout = Dropout(cfg.dropout)
        self.pre_norm = cfg.norm == "pre"

    def forward(self, x: torch.Tensor, f) -> torch.Tensor:
        if self.pre_norm:
            return x + self.dropout(f(self.norm(x)))
        return self.norm(x + self.dropout(f(x)))


class EncoderLayer(nn.Module):
    """Self-attention, then feed-forward, each in a residual sublayer."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(cfg)
        self.ffn = FeedForward(cfg)
        self.sub_attn = Sublayer(cfg)
        self.sub_ffn = Sublayer(cfg)

    def forward(self, x: torch.Tensor, src_mask: torch.Tensor) -> torch.Tensor:
        """x: (B, S, D), src_mask: (B, 1, 1, S) -> (B, S, D)"""
        x = self.sub_attn(x, lambda h: self.self_attn(h, mask=src_mask))
        return self.sub_ffn(x, self.ffn)


class DecoderLayer(nn.Module):
    """Masked self-attention, encoder-decoder attention, feed-forward."""

    def __init__(self, cfg: ModelConfig, index: int) -> None:
        super().__init__()
        self.index = index  # which of the decoder state's caches is this layer's
        self.self_attn = MultiHeadAttention(cfg)
        self.cross_attn = MultiHeadAttention(cfg, cross=True)
        self.ffn = FeedForward(cfg)
        self.sub_self = Sublayer(cfg)
        self.sub_cross = Sublayer(cfg)
        self.sub_ffn = Sublayer(cfg)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        src_mask: torch.Tensor,
        state: DecoderState | None = None,
    ) -> torch.Tensor:
        """x: (B, T, D), memory: (B/G, S, D), src_mask: (B/G, 1, 1, S) -> (B, T, D)"""
        i = self.index
        x = self.sub_self(x, lambda h: self.self_attn(h, causal=True, state=state, layer=i))
        x = self.sub_cross(
            x, lambda h: self.cross_attn.attend_memory(h, memory, src_mask, state, i)
        )
        return self.sub_ffn(x, self.ffn)
