"""The reference model of bench_train.py: tfcli's Transformer written with torch.nn.Transformer.

nn.Embedding (shared, scaled by sqrt(D)) + sinusoidal positions + dropout + nn.Transformer
(batch_first) + a Linear output tied to the embedding, with dropout where tfcli has it.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn

from tfcli.config import ModelConfig
from tfcli.data.tokenizer import PAD_ID
from tfcli.model.layers import sinusoid_table


class Reference(nn.Module):
    """The same model written with torch.nn.Transformer."""

    def __init__(self, cfg: ModelConfig, vocab: int) -> None:
        super().__init__()
        d = cfg.d_model
        self.embed = nn.Embedding(vocab, d, padding_idx=PAD_ID)
        self.scale = math.sqrt(d)
        self.register_buffer("positions", sinusoid_table(cfg.max_positions, d), persistent=False)
        self.dropout = nn.Dropout(cfg.dropout)
        with warnings.catch_warnings():  # nested tensors are for inference; not used here
            warnings.filterwarnings("ignore", message="enable_nested_tensor")
            self.transformer = nn.Transformer(
                d,
                cfg.heads,
                cfg.encoder_layers,
                cfg.decoder_layers,
                cfg.d_ff,
                cfg.dropout,
                cfg.activation,
                batch_first=True,
                norm_first=cfg.norm == "pre",
            )
        for module in self.transformer.modules():  # dropout where tfcli has it, no more
            if isinstance(module, nn.MultiheadAttention):
                module.dropout = cfg.attention_dropout  # on attention weights
            if isinstance(module, nn.TransformerEncoderLayer | nn.TransformerDecoderLayer):
                module.dropout = nn.Identity()  # inside the feed-forward block
        self.output = nn.Linear(d, vocab, bias=False)
        self.output.weight = self.embed.weight

    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.embed(ids) * self.scale + self.positions[: ids.size(1)])

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        src_pad = src == PAD_ID  # (B, S), True = padding
        t = tgt.size(1)
        causal = torch.ones(t, t, dtype=torch.bool, device=tgt.device).triu(1)  # True = blocked
        h = self.transformer(
            self._embed(src),
            self._embed(tgt),
            tgt_mask=causal,
            src_key_padding_mask=src_pad,
            memory_key_padding_mask=src_pad,
            tgt_is_causal=True,
        )  # (B, T, D)
        return self.output(h)  # (B, T, V)
