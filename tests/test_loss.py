"""The loss: label-smoothed cross-entropy from logits, and from hidden states a slice at a time."""

from __future__ import annotations

import pytest
import torch

import tfcli.model.loss
from tfcli.config import ModelConfig
from tfcli.data.tokenizer import PAD_ID
from tfcli.model.loss import LabelSmoothedLoss, loss_sum, output_loss_sum
from tfcli.model.transformer import Transformer


def _logits_and_target(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, V) logits and (B, T) targets with PAD at the end of two rows."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(3, 5, 11, generator=g)
    target = torch.randint(PAD_ID + 4, 11, (3, 5), generator=g)
    target[0, 3:] = PAD_ID
    target[2, 1:] = PAD_ID
    return logits, target


def test_loss_sum_without_smoothing_is_summed_cross_entropy_over_real_tokens():
    logits, target = _logits_and_target()
    real = target != PAD_ID
    nll = -logits.log_softmax(-1).gather(-1, target[..., None]).squeeze(-1)  # (B, T)
    assert loss_sum(logits, target, 0.0).item() == pytest.approx(nll[real].sum().item())


def test_label_smoothing_mixes_in_the_uniform_distribution():
    eps = 0.1
    logits, target = _logits_and_target()
    real = target != PAD_ID
    logp = logits.log_softmax(-1)
    nll = -logp.gather(-1, target[..., None]).squeeze(-1)  # (B, T)
    uniform = -logp.mean(-1)  # (B, T)
    expected = ((1 - eps) * nll + eps * uniform)[real].sum()
    assert loss_sum(logits, target, eps).item() == pytest.approx(expected.item())


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_pad_positions_contribute_nothing(smoothing):
    logits, target = _logits_and_target()
    changed = logits.clone()
    changed[target == PAD_ID] = 100 * torch.randn_like(changed[target == PAD_ID])
    assert loss_sum(changed, target, smoothing).item() == pytest.approx(
        loss_sum(logits, target, smoothing).item()
    )
    all_pad = torch.full_like(target, PAD_ID)
    assert loss_sum(logits, all_pad, smoothing).item() == 0.0


# --- output_loss_sum: the same loss without the whole logits -----------------------------------


def _hidden_weight_target(vocab: int = 11, seed: int = 0):
    """(B, T, D) hidden states and (V, D) output weights that need grads, (B, T) targets."""
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(3, 5, 8, generator=g).requires_grad_()
    weight = (0.5 * torch.randn(vocab, 8, generator=g)).requires_grad_()
    _, target = _logits_and_target(seed)
    return hidden, weight, target


@pytest.fixture
def small_slices(monkeypatch):
    """Slices of 2 rows, so that 15 rows take 8 slices and the last one is short."""
    monkeypatch.setattr(tfcli.model.loss, "SLICE_ELEMENTS", 2 * 11)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_output_loss_and_gradients_equal_those_from_whole_logits(small_slices, smoothing):
    hidden, weight, target = _hidden_weight_target()
    expected = loss_sum(hidden @ weight.t(), target, smoothing)
    expected_grads = torch.autograd.grad(3.0 * expected, [hidden, weight])
    loss = output_loss_sum(hidden, weight, target, smoothing)
    grads = torch.autograd.grad(3.0 * loss, [hidden, weight])  # the incoming gradient scales
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_output_loss_gives_pad_positions_no_gradient(small_slices):
    hidden, weight, target = _hidden_weight_target()
    (grad_h,) = torch.autograd.grad(output_loss_sum(hidden, weight, target, 0.1), [hidden])
    assert (grad_h[target == PAD_ID] == 0).all()
    assert (grad_h[target != PAD_ID].abs().sum(-1) > 0).all()


def test_output_loss_under_bf16_autocast_matches_the_autocast_logits_path(small_slices):
    hidden, weight, target = _hidden_weight_target()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = loss_sum(hidden @ weight.t(), target, 0.1)
        expected_grads = torch.autograd.grad(expected, [hidden, weight])
        loss = output_loss_sum(hidden, weight, target, 0.1)
        grads = torch.autograd.grad(loss, [hidden, weight])
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(expected.item(), rel=1e-3)
    for got, want in zip(grads, expected_grads):
        assert got.dtype == want.dtype == torch.float32
        torch.testing.assert_close(got, want, rtol=2e-2, atol=2e-2)


def test_output_loss_without_grad_is_the_same_number(small_slices):
    hidden, weight, target = _hidden_weight_target()
    with torch.no_grad():
        loss = output_loss_sum(hidden, weight, target, 0.1)
    assert not loss.requires_grad
    assert loss.item() == pytest.approx(loss_sum(hidden @ weight.t(), target, 0.1).item(), 1e-6)


def test_label_smoothed_loss_of_a_model_is_the_loss_of_its_logits():
    torch.manual_seed(0)
    cfg = ModelConfig(d_model=16, heads=2, d_ff=32, encoder_layers=1, decoder_layers=1)
    model = Transformer(cfg, 20, 20).eval()
    src = torch.tensor([[5, 6, 7, 3], [8, 9, 3, 0]])
    tgt_in = torch.tensor([[2, 10, 11], [2, 12, 0]])
    tgt_out = torch.tensor([[10, 11, 3], [12, 3, 0]])
    expected = loss_sum(model(src, tgt_in), tgt_out, 0.1)
    got = LabelSmoothedLoss(model, 0.1)(src, tgt_in, tgt_out)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
