"""Int8 inference on the CPU: every linear layer's weight quantized once, per output channel,
and its input quantized at each call by PyTorch's dynamic int8 kernels (FBGEMM, through
`torch.ao.nn.quantized.dynamic.Linear`). Embeddings, layer norms, attention and the search stay
in fp32.

`quantize_linears(model)` swaps the layers in place; the model is then for translation only
(tied output and embedding weights are no longer shared, and nothing has a gradient).
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from tfcli.errors import TfcliError
from tfcli.model.layers import MultiHeadAttention
from tfcli.model.transformer import Transformer


def _quantized(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Module:
    """A dynamic int8 linear layer holding `weight` (out, in) quantized symmetrically per row."""
    from torch.ao.nn.quantized import dynamic

    weight = weight.detach().float()
    out_features, in_features = weight.shape
    scales = (weight.abs().amax(1) / 127.0).clamp_min(1e-12).double()  # (out,)
    zeros = torch.zeros(out_features, dtype=torch.long)
    layer = dynamic.Linear(in_features, out_features, dtype=torch.qint8)
    qweight = torch.quantize_per_channel(weight, scales, zeros, 0, torch.qint8)
    layer.set_weight_bias(qweight, None if bias is None else bias.detach().float())
    return layer


class Int8Linear(nn.Module):
    """An int8 stand-in for `kernels.Linear` / `nn.Linear`, with `rows` for slices of its
    output rows (encoder-decoder attention projects W_q and the fused W_k, W_v apart)."""

    def __init__(self, linear: nn.Linear, parts: tuple[tuple[int, int], ...] = ()) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.full = _quantized(linear.weight, linear.bias)
        bias = linear.bias
        self.parts = nn.ModuleDict(
            {
                f"{a}_{b}": _quantized(linear.weight[a:b], None if bias is None else bias[a:b])
                for a, b in parts
            }
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.full(x)

    def rows(self, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """x through output rows start:stop of the weight (one of the parts made at init)."""
        return self.parts[f"{start}_{stop}"](x)


def _swap(module: nn.Module) -> None:
    """Replace the linear layers below `module` with Int8Linear, recursively."""
    for name, child in module.named_children():
        if isinstance(child, MultiHeadAttention) and child.cross:
            d = child.out_proj.in_features
            child.in_proj = Int8Linear(child.in_proj, parts=((0, d), (d, 3 * d)))
            child.out_proj = Int8Linear(child.out_proj)
        elif isinstance(child, nn.Linear):
            setattr(module, name, Int8Linear(child))
        else:
            _swap(child)


@torch.no_grad()
def quantize_linears(model: Transformer) -> Transformer:
    """`model` (on the CPU) with every linear layer in int8, in place; returns it in eval mode."""
    if next(model.parameters()).device.type != "cpu":
        raise TfcliError("precision int8 runs on the CPU; use --device cpu, or fp16/bf16 on a GPU")
    if "fbgemm" not in torch.backends.quantized.supported_engines:
        raise TfcliError("precision int8 needs PyTorch's FBGEMM kernels, which this build lacks")
    with warnings.catch_warnings():
        # torch.ao's eager quantization is marked deprecated in favour of torchao; its dynamic
        # int8 linear kernels are the ones PyTorch ships for the CPU.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        _swap(model)
    return model.eval()
