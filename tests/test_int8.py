"""Inference precisions: int8 linear layers and weights cast to bf16, each made once at load."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from tfcli.device import cpu_has_native_bf16, resolve_inference_precision
from tfcli.errors import TfcliError
from tfcli.model.int8 import Int8Linear, quantize_linears
from tfcli.translation.translator import inference_model, load_translator


def test_every_linear_layer_becomes_int8_and_the_logits_stay_close(tiny_model, random_src):
    from conftest import random_tgt

    src, tgt = random_src([5, 3, 7]), random_tgt(3, 6)
    with torch.no_grad():
        expected = tiny_model(src, tgt)
        quantize_linears(tiny_model)
        got = tiny_model(src, tgt)
    linears = [m for m in tiny_model.modules() if isinstance(m, nn.Linear)]
    assert linears == [], linears  # none left in fp32, the output layer included
    assert sum(isinstance(m, Int8Linear) for m in tiny_model.modules()) > 0
    scale = expected.abs().max()
    assert (got - expected).abs().max() < 0.05 * scale  # int8 rounding, not a different model


def test_int8_rows_equal_the_slice_of_the_full_projection():
    torch.manual_seed(0)
    layer = nn.Linear(16, 48)
    q = Int8Linear(layer, parts=((0, 16), (16, 48)))
    x = torch.randn(3, 5, 16)
    with torch.no_grad():
        full = q(x)
        torch.testing.assert_close(torch.cat([q.rows(x, 0, 16), q.rows(x, 16, 48)], -1), full)
        torch.testing.assert_close(full, layer(x), atol=0.05, rtol=0.05)


@pytest.mark.parametrize("precision", ["int8", "bf16"])
def test_a_memorising_model_says_the_same_in_every_precision(memorized_run, overfit, precision):
    translator = load_translator(memorized_run, precision=precision, device="cpu")
    assert translator.precision == precision
    assert translator.translate(overfit.sources) == overfit.translations


def test_bf16_casts_the_weights_once_and_keeps_the_positions_in_fp32(tiny_model):
    model = inference_model(tiny_model, "bf16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model.encoder.embed.positions.dtype == torch.float32


def test_int8_is_for_the_cpu_and_auto_picks_it_there():
    assert resolve_inference_precision("auto", torch.device("cpu")) == "int8"
    with pytest.raises(TfcliError, match="int8 runs on the CPU"):
        resolve_inference_precision("int8", torch.device("cuda"))


def test_bf16_warns_exactly_where_the_cpu_would_emulate_it(caplog):
    cpu = torch.device("cpu")
    with caplog.at_level(logging.WARNING, logger="tfcli"):
        for precision in ("auto", "fp32", "int8"):
            resolve_inference_precision(precision, cpu)
        assert caplog.records == []
        assert resolve_inference_precision("bf16", cpu) == "bf16"  # still what was asked for
    warned = [r.getMessage() for r in caplog.records if "no native bf16" in r.getMessage()]
    assert len(warned) == (0 if cpu_has_native_bf16() else 1), warned
