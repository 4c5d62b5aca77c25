"""The baseline decoder of bench_translate.py: tfcli's model without its key/value cache."""

from __future__ import annotations

import torch
from torch import nn

from tfcli.model.decoder_state import DecoderState
from tfcli.model.transformer import Transformer


class PrefixState(DecoderState):
    """A decoder state that keeps only the tokens fed so far, (N, t), and no keys or values.

    The search reorders and drops its rows through the same two methods as a real state's.
    """

    def __init__(self, beams: int) -> None:
        super().__init__(layers=0, beams=beams)
        self.prefix: torch.Tensor | None = None

    def reorder(self, rows: torch.Tensor) -> None:
        if self.prefix is not None:
            self.prefix = self.prefix.index_select(0, rows)

    def select_sentences(self, keep: torch.Tensor) -> None:
        offsets = torch.arange(self.beams, device=keep.device)
        self.reorder((keep[:, None] * self.beams + offsets).view(-1))  # (N' * G,)


class CacheFree(nn.Module):
    """`Transformer` for tfcli's search that keeps no key/value cache: every step re-runs the
    decoder layers over the whole prefix (BOS + tokens so far) and projects the last position.
    Everything else is the same search."""

    def __init__(self, model: Transformer) -> None:
        super().__init__()
        self.model, self.cfg = model, model.cfg

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.encode(src)

    def new_state(self, beams: int = 1) -> PrefixState:
        return PrefixState(beams)

    def decode(
        self, tgt: torch.Tensor, memory: torch.Tensor, src_mask: torch.Tensor, state: PrefixState
    ) -> torch.Tensor:
        if state.prefix is not None:
            tgt = torch.cat([state.prefix, tgt], 1)
        state.prefix = tgt  # (N, t)
        dec = self.model.decoder
        x = dec.embed(tgt)  # (N, t, D)
        for layer in dec.layers:
            x = layer(x, memory, src_mask)
        return dec.output(dec.final_norm(x[:, -1:]))  # (N, 1, V): only the last position
