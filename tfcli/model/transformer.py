"""The encoder-decoder Transformer with an encode() / decode() API for search.

Notation as in layers.py: B batch rows, S source length, T target length, D d_model,
V vocabulary. All masks are made here (`source_mask`); True = may attend.
"""

from __future__ import annotations

import torch
from torch import nn

from tfcli.config import ModelConfig
from tfcli.data.tokenizer import PAD_ID
from tfcli.model.decoder_state import DecoderState
from tfcli.model.layers import DecoderLayer, Embeddings, EncoderLayer


def source_mask(src: torch.Tensor) -> torch.Tensor:
    """Key padding mask for attention over the source: (B, S) ids -> (B, 1, 1, S) bool."""
    return (src != PAD_ID)[:, None, None, :]


def _final_norm(cfg: ModelConfig) -> nn.Module:
    """Pre-norm stacks end with a layer norm (their sublayers' outputs are not normalized)."""
    return nn.LayerNorm(cfg.d_model) if cfg.norm == "pre" else nn.Identity()


class Encoder(nn.Module):
    def __init__(self, cfg: ModelConfig, embed: Embeddings) -> None:
        super().__init__()
        self.embed = embed
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.encoder_layers))
        self.final_norm = _final_norm(cfg)

    def forward(self, src: torch.Tensor, src_mask: torch.Tensor) -> torch.Tensor:
        x = self.embed(src)  # (B, S, D)
        for layer in self.layers:
            x = layer(x, src_mask)
        return self.final_norm(x)


class Decoder(nn.Module):
    def __init__(self, cfg: ModelConfig, embed: Embeddings, vocab: int) -> None:
        super().__init__()
        self.embed = embed
        self.layers = nn.ModuleList(DecoderLayer(cfg, i) for i in range(cfg.decoder_layers))
        self.final_norm = _final_norm(cfg)
        self.output = nn.Linear(cfg.d_model, vocab, bias=False)  # the "generator"
        nn.init.normal_(self.output.weight, mean=0.0, std=cfg.d_model**-0.5)

    def forward(
        self,
        tgt: torch.Tensor,
        memory: torch.Tensor,
        src_mask: torch.Tensor,
        state: DecoderState | None = None,
    ) -> torch.Tensor:
        """The last hidden states (B, T, D), before the output layer."""
        x = self.embed(tgt, state.length if state is not None else 0)  # (B, T, D)
        for layer in self.layers:
            x = layer(x, memory, src_mask, state)
        return self.final_norm(x)


class Transformer(nn.Module):
    """Encoder-decoder Transformer.

    Shape:
        src: (B, S) source ids ending in EOS, right-padded with PAD.
        tgt: (B, T) target ids starting with BOS.
        returns logits (B, T, V) over the target vocabulary.
    """

    def __init__(self, cfg: ModelConfig, src_vocab: int, tgt_vocab: int) -> None:
        super().__init__()
        self.cfg = cfg
        if cfg.tie_embeddings == "all" and src_vocab != tgt_vocab:
            raise ValueError("tie_embeddings: all needs one vocabulary for source and target")
        src_embed = Embeddings(src_vocab, cfg)
        tgt_embed = Embeddings(tgt_vocab, cfg)
        if cfg.tie_embeddings == "all":
            tgt_embed.tokens = src_embed.tokens
        self.encoder = Encoder(cfg, src_embed)
        self.decoder = Decoder(cfg, tgt_embed, tgt_vocab)
        if cfg.tie_embeddings in ("decoder", "all"):
            self.decoder.output.weight = tgt_embed.tokens.weight

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """src (B, S) -> memory (B, S, D) and its mask (B, 1, 1, S)."""
        src_mask = source_mask(src)
        return self.encoder(src, src_mask), src_mask

    def decode(
        self,
        tgt: torch.Tensor,
        memory: torch.Tensor,
        src_mask: torch.Tensor,
        state: DecoderState | None = None,
    ) -> torch.Tensor:
        """tgt (B, T) -> logits (B, T, V). With a state, feed one new token per call.

        memory and src_mask may have B / G rows, G target rows per source (the beams of a
        sentence, adjacent): see MultiHeadAttention.attend_memory.
        """
        return self.decoder.output(self.decoder(tgt, memory, src_mask, state))

    def decoder_states(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        """The decoder's last hidden states (B, T, D) for teacher-forced `tgt`: what the output
        layer projects to logits (the training loss does it a slice at a time)."""
        memory, src_mask = self.encode(src)
        return self.decoder(tgt, memory, src_mask)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, V) for teacher-forced `tgt`."""
        return self.decoder.output(self.decoder_states(src, tgt))

    def new_state(self, beams: int = 1) -> DecoderState:
        """An empty decoder state for step-by-step decoding, `beams` rows per source sentence."""
        return DecoderState(len(self.decoder.layers), beams)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters, each shared tensor counted once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
