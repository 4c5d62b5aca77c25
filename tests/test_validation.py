"""Validation: the dev loss and the test-set outputs."""

from __future__ import annotations

import json

import pytest
import torch

from tfcli.config import DecodeConfig, ModelConfig
from tfcli.data.batching import collate
from tfcli.data.pairs import Example
from tfcli.model.loss import loss_sum
from tfcli.model.transformer import Transformer
from tfcli.run_dir import RunDir
from tfcli.training.validation import SAMPLES, dev_loss, translate_test_set
from tfcli.translation.translator import Translator


def test_dev_loss_is_the_unsmoothed_loss_per_target_token():
    torch.manual_seed(0)
    cfg = ModelConfig(d_model=16, heads=2, d_ff=32, encoder_layers=1, decoder_layers=1)
    model = Transformer(cfg, 20, 20)
    batches = [
        collate([Example(0, [5, 6, 7], [8, 9]), Example(1, [10], [11, 12, 13])]),
        collate([Example(2, [14, 15], [16])]),
    ]
    total = sum(loss_sum(model.eval()(b.src, b.tgt_in), b.tgt_out, 0.0).item() for b in batches)
    loss = dev_loss(model, batches, torch.device("cpu"), "fp32")
    assert loss == pytest.approx(total / 9, rel=1e-5)  # 9 target tokens with EOS


def test_translate_test_set_writes_outputs_scores_and_samples(
    tmp_path, make_model, model_cfg, tokenizer
):
    src = [f"Satz {i}." for i in range(12)]
    ref = [f"Sentence {i}." for i in range(12)]
    model = make_model(model_cfg, vocab=len(tokenizer))
    cpu = torch.device("cpu")
    translator = Translator(model, tokenizer, tokenizer, DecodeConfig(beam=1), cpu, "fp32")
    scores, samples = translate_test_set(translator, (src, ref), RunDir(tmp_path), step=7)
    hyps = (tmp_path / "test.hyp").read_text(encoding="utf-8").splitlines()
    assert len(hyps) == 12
    record = json.loads(RunDir(tmp_path).metrics.read_text(encoding="utf-8"))
    assert record["step"] == 7 and record["test"]["bleu"] == scores["bleu"]
    assert len(samples) == SAMPLES
    assert [s[0] for s in samples] == [src[i] for i in (0, 2, 4, 6, 8)]
    assert all(s[2] == hyps[src.index(s[0])] for s in samples)
