"""The encoder-decoder Transformer with an encode() / decode() API and a key/value cache.

Notation: B batch, S source length, T target length, D d_model, V vocabulary.
All masks are made here (`source_mask`); True = may attend.
"""

from __future__ import annotations

import torch
from torch import nn

from tfcli.config import ModelConfig
from tfcli.layers import DecoderLayer, Embeddings, EncoderLayer, KVCache
from tfcli.loss import output_loss_sum
from tfcli.tokenizer import PAD_ID

# The decoder's cache: one {"self": KVCache, "cross": KVCache} per layer.
DecoderCache = list[dict[str, KVCache]]


def source_mask(src: torch.Tensor) -> torch.Tensor:
    """Key padding mask for attention over the source: (B, S) ids -> (B, 1, 1, S) bool."""
    return (src != PAD_ID)[:, None, None, :]


def _layer_args(cfg: ModelConfig) -> tuple:
    """The arguments of EncoderLayer and DecoderLayer, in their order."""
    return (
        cfg.d_model,
        cfg.heads,
        cfg.d_ff,
        cfg.dropout,
        cfg.attention_dropout,
        cfg.norm == "pre",
        cfg.activation,
    )


class Encoder(nn.Module):
    def __init__(self, cfg: ModelConfig, embed: Embeddings) -> None:
        super().__init__()
        self.embed = embed
        self.layers = nn.ModuleList(
            EncoderLayer(*_layer_args(cfg)) for _ in range(cfg.encoder_layers)
        )
        self.final_norm = nn.LayerNorm(cfg.d_model) if cfg.norm == "pre" else nn.Identity()

    def forward(self, src: torch.Tensor, src_mask: torch.Tensor) -> torch.Tensor:
        x = self.embed(src)  # (B, S, D)
        for layer in self.layers:
            x = layer(x, src_mask)
        return self.final_norm(x)


class Decoder(nn.Module):
    def __init__(self, cfg: ModelConfig, embed: Embeddings, vocab: int) -> None:
        super().__init__()
        self.embed = embed
        self.layers = nn.ModuleList(
            DecoderLayer(*_layer_args(cfg)) for _ in range(cfg.decoder_layers)
        )
        self.final_norm = nn.LayerNorm(cfg.d_model) if cfg.norm == "pre" else nn.Identity()
        self.output = nn.Linear(cfg.d_model, vocab, bias=False)  # the "generator"
        nn.init.normal_(self.output.weight, mean=0.0, std=cfg.d_model**-0.5)

    def forward(
        self,
        tgt: torch.Tensor,
        memory: torch.Tensor,
        src_mask: torch.Tensor,
        cache: DecoderCache | None = None,
        project: bool = True,
    ) -> torch.Tensor:
        """-> logits (B, T, V), or with `project=False` the last hidden states (B, T, D)."""
        offset = 0
        if cache is not None and "kv" in cache[0]["self"]:
            offset = cache[0]["self"]["kv"].size(1)
        x = self.embed(tgt, offset)  # (B, T, D)
        for i, layer in enumerate(self.layers):
            x = layer(x, memory, src_mask, cache[i] if cache is not None else None)
        x = self.final_norm(x)  # (B, T, D)
        return self.output(x) if project else x  # (B, T, V)


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
        src_embed = Embeddings(src_vocab, cfg.d_model, cfg.max_positions, cfg.dropout)
        tgt_embed = Embeddings(tgt_vocab, cfg.d_model, cfg.max_positions, cfg.dropout)
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
        cache: DecoderCache | None = None,
    ) -> torch.Tensor:
        """tgt (B, T) -> logits (B, T, V). With a cache, feed one new token per call.

        memory and src_mask may have B / G rows, G target rows per source (the beams of a
        sentence, adjacent): see MultiHeadAttention.
        """
        return self.decoder(tgt, memory, src_mask, cache)

    def forward(
        self,
        src: torch.Tensor,
        tgt: torch.Tensor,
        target: torch.Tensor | None = None,
        smoothing: float = 0.0,
    ) -> torch.Tensor:
        """Logits (B, T, V); given `target` (B, T), the summed label-smoothed loss instead.

        The loss goes through `output_loss_sum`, which never makes the whole logits.
        """
        memory, src_mask = self.encode(src)
        if target is None:
            return self.decode(tgt, memory, src_mask)
        hidden = self.decoder(tgt, memory, src_mask, project=False)  # (B, T, D)
        return output_loss_sum(hidden, self.decoder.output.weight, target, smoothing)

    def new_cache(self) -> DecoderCache:
        """An empty key/value cache for incremental decoding."""
        return [{"self": {}, "cross": {}} for _ in self.decoder.layers]


def reorder_cache(
    cache: DecoderCache, index: torch.Tensor, cross_index: torch.Tensor | None = None
) -> DecoderCache:
    """Select rows `index` (N,) of the self-attention caches and rows `cross_index` of the
    cross-attention caches (None: keep them as they are), in place.

    Beam search keeps one cross-attention cache row per sentence, shared by its beams: it
    reorders the self-attention caches after every step, the cross-attention caches only
    when finished sentences leave the batch. A self-attention cache only records the order
    ("order", composed with one not yet applied); the next append_keys_values applies it.
    """
    for layer in cache:
        own = layer["self"]
        own["order"] = index if "order" not in own else own["order"].index_select(0, index)
        if cross_index is not None:
            for key, t in layer["cross"].items():
                layer["cross"][key] = t.index_select(0, cross_index)
    return cache


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters, each shared tensor counted once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
