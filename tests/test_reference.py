"""tfcli's Transformer against an implementation independent of ours: its weights loaded into
torch.nn.Transformer, with embeddings, positions and the output layer written here from the
paper's formulas, give the same logits."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tfcli.config import ModelConfig
from tfcli.data.tokenizer import BOS_ID, PAD_ID
from tfcli.model.transformer import Transformer

V = 40


def positions(length: int, d: int) -> torch.Tensor:
    """PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(p / 10000^(2i/d))."""
    table = torch.zeros(length, d, dtype=torch.float64)
    for p in range(length):
        for i in range(d // 2):
            angle = p / 10000 ** (2 * i / d)
            table[p, 2 * i], table[p, 2 * i + 1] = math.sin(angle), math.cos(angle)
    return table.float()


def copy_attention(ref: nn.MultiheadAttention, ours: nn.Module) -> None:
    """nn.MultiheadAttention keeps W_q, W_k, W_v stacked in that order, as tfcli does."""
    ref.in_proj_weight.copy_(ours.in_proj.weight)
    ref.in_proj_bias.copy_(ours.in_proj.bias)
    ref.out_proj.weight.copy_(ours.out_proj.weight)
    ref.out_proj.bias.copy_(ours.out_proj.bias)


def copy_norm(ref: nn.LayerNorm, ours: nn.LayerNorm) -> None:
    ref.weight.copy_(ours.weight)
    ref.bias.copy_(ours.bias)


def copy_ffn(ref: nn.Module, ours: nn.Module) -> None:
    for name, lin in (("linear1", ours.fc1), ("linear2", ours.fc2)):
        getattr(ref, name).weight.copy_(lin.weight)
        getattr(ref, name).bias.copy_(lin.bias)


@torch.no_grad()
def reference_of(model: Transformer) -> nn.Transformer:
    """An nn.Transformer holding `model`'s weights (final norms only where pre-norm has them)."""
    cfg = model.cfg
    ref = nn.Transformer(
        cfg.d_model,
        cfg.heads,
        cfg.encoder_layers,
        cfg.decoder_layers,
        cfg.d_ff,
        dropout=0.0,
        activation=cfg.activation,
        batch_first=True,
        norm_first=cfg.norm == "pre",
    ).eval()
    for r, o in zip(ref.encoder.layers, model.encoder.layers):
        copy_attention(r.self_attn, o.self_attn)
        copy_ffn(r, o.ffn)
        copy_norm(r.norm1, o.sub_attn.norm)
        copy_norm(r.norm2, o.sub_ffn.norm)
    for r, o in zip(ref.decoder.layers, model.decoder.layers):
        copy_attention(r.self_attn, o.self_attn)
        copy_attention(r.multihead_attn, o.cross_attn)
        copy_ffn(r, o.ffn)
        copy_norm(r.norm1, o.sub_self.norm)
        copy_norm(r.norm2, o.sub_cross.norm)
        copy_norm(r.norm3, o.sub_ffn.norm)
    if cfg.norm == "pre":
        copy_norm(ref.encoder.norm, model.encoder.final_norm)
        copy_norm(ref.decoder.norm, model.decoder.final_norm)
    else:  # the paper's post-norm stacks end with their last sublayer's norm
        ref.encoder.norm, ref.decoder.norm = None, None
    return ref


def reference_logits(model: Transformer, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
    d = model.cfg.d_model
    ref = reference_of(model)
    src_table, tgt_table = model.encoder.embed.tokens.weight, model.decoder.embed.tokens.weight
    pe = positions(max(src.size(1), tgt.size(1)), d)
    src_x = src_table[src] * math.sqrt(d) + pe[: src.size(1)]  # (B, S, D)
    tgt_x = tgt_table[tgt] * math.sqrt(d) + pe[: tgt.size(1)]  # (B, T, D)
    t = tgt.size(1)
    causal = torch.ones(t, t, dtype=torch.bool).triu(1)  # True = blocked
    pad = src == PAD_ID  # (B, S), True = blocked
    with torch.no_grad():
        h = ref(
            src_x, tgt_x, tgt_mask=causal, src_key_padding_mask=pad, memory_key_padding_mask=pad
        )
    return h @ model.decoder.output.weight.t()  # (B, T, V)


@pytest.mark.filterwarnings("ignore:.*nested.tensor")  # nn.Transformer's inference path
@pytest.mark.parametrize("norm", ["post", "pre"])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_logits_equal_those_of_torch_nn_transformer(random_src, norm, activation):
    cfg = ModelConfig(
        d_model=32,
        heads=4,
        d_ff=64,
        encoder_layers=2,
        decoder_layers=2,
        dropout=0.0,
        norm=norm,
        activation=activation,
        tie_embeddings="none",
        max_positions=64,
    )
    torch.manual_seed(0)
    model = Transformer(cfg, V, V).eval()
    with torch.no_grad():  # every weight random, the layer norms' and biases too
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    src = random_src([7, 3, 9])  # (3, 10) with padding
    g = torch.Generator().manual_seed(1)
    tgt = torch.randint(4, V, (3, 6), generator=g)
    tgt[:, 0] = BOS_ID
    with torch.no_grad():
        ours = model(src, tgt)
    torch.testing.assert_close(ours, reference_logits(model, src, tgt), atol=1e-4, rtol=0)
