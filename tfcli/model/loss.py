"""The training loss: label-smoothed cross-entropy over the target vocabulary, summed over
the non-pad target tokens.

    LabelSmoothedLoss(model, eps)(src, tgt_in, tgt_out)   what training and validation call;
                                                          DDP and torch.compile wrap it
    loss_sum(logits, target, eps)                 from (B, T, V) logits, with F.cross_entropy
    output_loss_sum(hidden, weight, target, eps)  from the decoder's last hidden states and the
                                                  output projection, in slices of rows

The module uses the third. For about a hundred rows at a time it projects to the
vocabulary, takes the loss, and computes the gradient (softmax - smoothed target) straight
away, so the (B*T, V) logits, their log-softmax and their gradient never exist whole. Each
slice (its logits and their softmax, 4 MB each) stays in the CPU's caches, where the whole-batch
tensors (64 MB each at 2k tokens x 8k words in fp32) would be freshly mapped memory at every
step.

With smoothing eps over V words, the target distribution of a token y is
q = (1 - eps) * onehot(y) + eps / V, the loss of a row with logits z is
logsumexp(z) - (1 - eps) * z_y - (eps / V) * sum(z), and its gradient is softmax(z) - q.
logsumexp comes from the softmax itself: max(z) - log(max softmax(z)).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tfcli.data.tokenizer import PAD_ID
from tfcli.device import autocast_dtype
from tfcli.model.kernels import pad_rows, pad_rows_for_bf16
from tfcli.model.transformer import Transformer

# Logit elements per slice (rows = this / V; 131 rows at 8k words): 4 MB in fp32, which fits
# the CPU's caches (benchmarks/README.md has the sizes tried).
SLICE_ELEMENTS = 1 << 20


def loss_sum(logits: torch.Tensor, target: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Label-smoothed cross-entropy summed over non-pad target tokens.

    Shape: logits (B, T, V), target (B, T) -> scalar
    """
    return F.cross_entropy(
        logits.float().flatten(0, 1),
        target.flatten(),
        ignore_index=PAD_ID,
        label_smoothing=smoothing,
        reduction="sum",
    )


class _OutputCrossEntropy(torch.autograd.Function):
    """Summed label-smoothed cross-entropy of (hidden @ weight^T); gradients made in forward."""

    @staticmethod
    def forward(ctx, hidden, weight, target, smoothing, dtype, with_grad):  # noqa: ANN001
        # hidden (M, D), weight (V, D), target (M,): M = B*T target positions
        m, vocab = hidden.size(0), weight.size(0)
        rows = max(1, SLICE_ELEMENTS // vocab)
        w, h = weight.to(dtype), hidden.to(dtype)
        real = (target != PAD_ID).to(torch.float32)  # (M,)
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        # fp32: each slice's gradient goes into grad_h and grad_w at once. Lower precision:
        # the slices' gradients are gathered into one (M, V) tensor and multiplied at the end,
        # as each of oneDNN's bf16 matmul calls has a fixed cost on top of its FLOPs.
        gathered = (
            torch.empty(m, vocab, dtype=dtype, device=hidden.device)
            if with_grad and dtype != torch.float32
            else None
        )
        grad_h, grad_w = None, None
        if with_grad and gathered is None:
            grad_h = torch.empty_like(h)  # (M, D)
            grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
        for start in range(0, m, rows):
            part = slice(start, start + rows)
            h_s, y, keep = (
                h[part],
                target[part, None],
                real[part, None],
            )  # (r, D), (r, 1), (r, 1): r rows
            z = (h_s @ w.t()).float()  # (r, V)
            # One fused softmax, and logsumexp read off it: the largest probability is
            # exp(max - lse), so lse = max - log(max p). That entry never underflows
            # (it is at least 1/V), and the two amax passes are cheap, where torch.logsumexp
            # is five passes over the slice and the softmax a sixth and seventh.
            g = torch.softmax(z, 1)  # (r, V)
            lse = z.amax(1, keepdim=True) - g.amax(1, keepdim=True).log()  # (r, 1)
            row = lse - (1.0 - smoothing) * z.gather(1, y)
            if smoothing > 0:
                row = row - (smoothing / vocab) * z.sum(1, keepdim=True)
            total += (row * keep).sum()
            if not with_grad:
                continue
            if smoothing > 0:
                g.sub_(smoothing / vocab)
            g.scatter_add_(1, y, torch.full_like(lse, smoothing - 1.0))
            g.mul_(keep)  # (r, V); pad rows have no gradient
            if gathered is not None:
                gathered[part] = g
                continue
            torch.mm(g, w, out=grad_h[part])  # (r, D)
            grad_w.addmm_(g.t(), h_s)  # (V, D), accumulated in place: no (V, D) temporary
        if gathered is not None:
            grad_h = gathered @ w  # (M, D)
            grad_w = (gathered.t() @ h).float()  # (V, D)
        ctx.grads = (grad_h, grad_w)
        ctx.dtypes = (hidden.dtype, weight.dtype)
        return total

    @staticmethod
    def backward(ctx, grad_total):  # noqa: ANN001
        grad_h, grad_w = ctx.grads
        h_dtype, w_dtype = ctx.dtypes
        grad_h = (grad_h * grad_total).to(h_dtype)
        grad_w = (grad_w * grad_total).to(w_dtype)
        return grad_h, grad_w, None, None, None, None


def output_loss_sum(
    hidden: torch.Tensor, weight: torch.Tensor, target: torch.Tensor, smoothing: float
) -> torch.Tensor:
    """`loss_sum(hidden @ weight.T, target, smoothing)` without making the whole logits.

    Runs in autocast's dtype when autocast is on (bf16: the matmuls in bf16, the softmax and
    the loss in fp32). fp16 keeps the plain path, whose gradients the loss scaler protects.

    Shape: hidden (B, T, D), weight (V, D), target (B, T) -> scalar
    """
    dtype = autocast_dtype(hidden.device.type) or hidden.dtype
    if dtype == torch.float16 or torch.compiler.is_compiling():
        return loss_sum(F.linear(hidden, weight), target, smoothing)
    hidden, target = hidden.flatten(0, 1), target.flatten()  # (M, D), (M,)
    if pad_rows_for_bf16(hidden):  # pad rows: zero loss, no gradient
        hidden, target = pad_rows(hidden), pad_rows(target, PAD_ID)
    with_grad = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    with torch.autocast(hidden.device.type, enabled=False):
        return _OutputCrossEntropy.apply(hidden, weight, target, smoothing, dtype, with_grad)


class LabelSmoothedLoss(nn.Module):
    """The summed label-smoothed loss of `model` on a batch, from its decoder states through
    `output_loss_sum`: the module that training steps, so DDP and torch.compile wrap it."""

    def __init__(self, model: Transformer, smoothing: float) -> None:
        super().__init__()
        self.model, self.smoothing = model, smoothing

    def forward(
        self, src: torch.Tensor, tgt_in: torch.Tensor, tgt_out: torch.Tensor
    ) -> torch.Tensor:
        """src (B, S), tgt_in (B, T) BOS + target, tgt_out (B, T) target + EOS -> scalar"""
        hidden = self.model.decoder_states(src, tgt_in)  # (B, T, D)
        weight = self.model.decoder.output.weight  # (V, D)
        return output_loss_sum(hidden, weight, tgt_out, self.smoothing)
