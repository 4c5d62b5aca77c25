"""Export a trained model to CTranslate2, a fast C++ inference engine for Transformers.

The exported directory holds `model.bin`, `config.json`, the vocabularies and the sentencepiece
models (`source.spm`, `target.spm`), so it translates on its own:

    translator = ctranslate2.Translator(out_dir)
    src = sentencepiece.SentencePieceProcessor(model_file=f"{out_dir}/source.spm")
    tgt = sentencepiece.SentencePieceProcessor(model_file=f"{out_dir}/target.spm")
    pieces = src.encode(line, out_type=str)
    result = translator.translate_batch([pieces], suppress_sequences=[["<pad>"], ["<s>"]])
    print(tgt.decode(result[0].hypotheses[0]))

Our model maps one to one onto CTranslate2's `TransformerSpec`: fused query/key/value in
self-attention, W_q and fused W_k/W_v in encoder-decoder attention, embeddings scaled by
sqrt(d_model), our own sinusoidal table as position encodings, post- or pre-norm layers.
CTranslate2 appends EOS to the source and starts the decoder from BOS, as tfcli does. tfcli's
search never produces PAD or BOS; `suppress_sequences` above does the same in CTranslate2.
Its length penalty differs: tfcli's is GNMT's ((5 + length) / 6)^alpha, CTranslate2's
length^alpha (`length_penalty=alpha`), so beam outputs can differ slightly.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from tfcli.checkpoint import Checkpoint, build_model, find_checkpoint, load_checkpoint
from tfcli.data.tokenizer import BOS_ID, EOS_ID, UNK_ID, Tokenizer
from tfcli.errors import TfcliError
from tfcli.model.layers import DecoderLayer, EncoderLayer, FeedForward, MultiHeadAttention
from tfcli.model.transformer import Transformer

if TYPE_CHECKING:  # ctranslate2 is optional: imported only when exporting
    from ctranslate2.specs import TransformerSpec

QUANTIZATIONS = (
    "int8",
    "int8_float32",
    "int8_float16",
    "int8_bfloat16",
    "int16",
    "float16",
    "bfloat16",
    "float32",
)
SOURCE_SPM = "source.spm"
TARGET_SPM = "target.spm"
_MISSING = "export to ctranslate2 needs the ctranslate2 package: pip install 'tfcli[ctranslate2]'"


def _array(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float32).numpy().copy()


def _set_linear(spec: Any, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
    spec.weight = _array(weight)
    if bias is not None:
        spec.bias = _array(bias)


def _set_norm(spec: Any, norm: nn.LayerNorm) -> None:
    spec.gamma = _array(norm.weight)
    spec.beta = _array(norm.bias)


def _set_attention(spec: Any, attn: MultiHeadAttention, norm: nn.LayerNorm) -> None:
    """Self-attention: linear[0] = fused W_qkv. Cross: linear[0] = W_q, linear[1] = W_kv."""
    w, b, d = attn.in_proj.weight, attn.in_proj.bias, attn.out_proj.weight.size(0)
    if attn.cross:
        _set_linear(spec.linear[0], w[:d], b[:d])
        _set_linear(spec.linear[1], w[d:], b[d:])
    else:
        _set_linear(spec.linear[0], w, b)
    _set_linear(spec.linear[-1], attn.out_proj.weight, attn.out_proj.bias)
    _set_norm(spec.layer_norm, norm)


def _set_ffn(spec: Any, ffn: FeedForward, norm: nn.LayerNorm) -> None:
    _set_linear(spec.linear_0, ffn.fc1.weight, ffn.fc1.bias)
    _set_linear(spec.linear_1, ffn.fc2.weight, ffn.fc2.bias)
    _set_norm(spec.layer_norm, norm)


def _set_inputs(spec: Any, embed: nn.Module, final_norm: nn.Module) -> None:
    """Token embeddings, our exact sinusoidal table, and the pre-norm stack's final norm."""
    emb = spec.embeddings[0] if isinstance(spec.embeddings, list) else spec.embeddings
    emb.weight = _array(embed.tokens.weight)
    spec.scale_embeddings = True  # CTranslate2 multiplies by sqrt(d_model), as Embeddings does
    spec.position_encodings.encodings = _array(embed.positions)
    if isinstance(final_norm, nn.LayerNorm):
        _set_norm(spec.layer_norm, final_norm)


def _set_encoder_layer(spec: Any, layer: EncoderLayer) -> None:
    _set_attention(spec.self_attention, layer.self_attn, layer.sub_attn.norm)
    _set_ffn(spec.ffn, layer.ffn, layer.sub_ffn.norm)


def _set_decoder_layer(spec: Any, layer: DecoderLayer) -> None:
    _set_attention(spec.self_attention, layer.self_attn, layer.sub_self.norm)
    _set_attention(spec.attention, layer.cross_attn, layer.sub_cross.norm)
    _set_ffn(spec.ffn, layer.ffn, layer.sub_ffn.norm)


def vocabulary(tok: Tokenizer) -> list[str]:
    """Sentencepiece pieces in id order: CTranslate2's vocabulary for that side."""
    return [tok.sp.id_to_piece(i) for i in range(len(tok))]


def transformer_spec(model: Transformer, src_tok: Tokenizer, tgt_tok: Tokenizer) -> TransformerSpec:
    """Fill a CTranslate2 `TransformerSpec` with the weights and vocabularies of `model`."""
    from ctranslate2.specs import TransformerSpec, common_spec

    cfg = model.cfg
    activation = {"relu": common_spec.Activation.RELU, "gelu": common_spec.Activation.GELU}
    spec = TransformerSpec.from_config(
        (cfg.encoder_layers, cfg.decoder_layers),
        cfg.heads,
        pre_norm=cfg.norm == "pre",
        activation=activation[cfg.activation],
    )
    enc, dec = model.encoder, model.decoder
    _set_inputs(spec.encoder, enc.embed, enc.final_norm)
    _set_inputs(spec.decoder, dec.embed, dec.final_norm)
    for layer_spec, layer in zip(spec.encoder.layer, enc.layers):
        _set_encoder_layer(layer_spec, layer)
    for layer_spec, layer in zip(spec.decoder.layer, dec.layers):
        _set_decoder_layer(layer_spec, layer)
    _set_linear(spec.decoder.projection, dec.output.weight)

    spec.register_source_vocabulary(vocabulary(src_tok))
    spec.register_target_vocabulary(vocabulary(tgt_tok))
    config = spec.config
    config.unk_token = tgt_tok.sp.id_to_piece(UNK_ID)
    config.bos_token = tgt_tok.sp.id_to_piece(BOS_ID)
    config.eos_token = tgt_tok.sp.id_to_piece(EOS_ID)
    config.decoder_start_token = config.bos_token  # the decoder starts from BOS
    config.add_source_bos = False
    config.add_source_eos = True  # the source is `ids + [EOS]`
    if src_tok.sp.id_to_piece(EOS_ID) != config.eos_token:
        raise TfcliError("source and target sentencepiece models name EOS differently")
    config.layer_norm_epsilon = model.decoder.layers[0].sub_ffn.norm.eps
    return spec


def _check_out_dir(out_dir: Path) -> None:
    """Refuse to replace a non-empty directory that is not an earlier export."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise TfcliError(f"{out_dir}: exists and is not a directory")
    if any(out_dir.iterdir()) and not (out_dir / "model.bin").is_file():
        raise TfcliError(
            f"{out_dir}: directory is not empty and holds no exported model; "
            "give a new or empty directory"
        )


def export_ctranslate2(
    checkpoint_path_or_run: Path, out_dir: Path, quantization: str | None = None
) -> Path:
    """Write a checkpoint (or a run directory's best checkpoint) as a CTranslate2 model.

    Args:
        checkpoint_path_or_run: a checkpoint file or a run directory.
        out_dir: created, or replaced when it holds an earlier export.
        quantization: None (float32 weights) or one of `QUANTIZATIONS`, e.g. "int8".
    Returns:
        `out_dir`, holding model.bin, config.json, the vocabularies, source.spm and target.spm.
    """
    try:
        import ctranslate2.converters
    except ImportError:
        raise TfcliError(_MISSING) from None
    if quantization is not None and quantization not in QUANTIZATIONS:
        raise TfcliError(f"quantization {quantization!r} is not one of: {', '.join(QUANTIZATIONS)}")
    out_dir = Path(out_dir)
    _check_out_dir(out_dir)
    ckpt = load_checkpoint(find_checkpoint(checkpoint_path_or_run), with_state=False)

    class _TfcliConverter(ctranslate2.converters.Converter):
        def __init__(self, ckpt: Checkpoint) -> None:
            self.ckpt = ckpt

        def _load(self) -> TransformerSpec:
            model = build_model(self.ckpt)
            return transformer_spec(model, self.ckpt.src_tokenizer, self.ckpt.tgt_tokenizer)

    with torch.no_grad():
        _TfcliConverter(ckpt).convert(str(out_dir), quantization=quantization, force=True)
    ckpt.src_tokenizer.save(out_dir / SOURCE_SPM)
    ckpt.tgt_tokenizer.save(out_dir / TARGET_SPM)
    return out_dir
