"""The baseline decoder of bench_translate.py: tfcli's model without its key/value cache."""

from __future__ import annotations

import torch
from torch import nn

from tfcli.model import DecoderCache, Transformer


class CacheFree(nn.Module):
    """`Transformer` for tfcli.search that ignores the key/value cache: every step re-runs the
    decoder layers over the whole prefix (BOS + tokens so far) and projects the last position.

    The prefix is kept in the cache dict itself, so the search's reordering of cache rows
    (beams, finished sentences) applies to it too; everything else is the same search.
    """

    def __init__(self, model: Transformer) -> None:
        super().__init__()
        self.model, self.cfg = model, model.cfg

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.encode(src)

    def new_cache(self) -> DecoderCache:
        return self.model.new_cache()

    def decode(
        self, tgt: torch.Tensor, memory: torch.Tensor, src_mask: torch.Tensor, cache: DecoderCache
    ) -> torch.Tensor:
        state = cache[0]["self"]  # reorder_cache leaves the rows to select in "order"
        order = state.pop("order", None)
        if "prefix" in state:
            past = state["prefix"] if order is None else state["prefix"][order]
            tgt = torch.cat([past, tgt], 1)
        prefix = state["prefix"] = tgt  # (N, t)
        dec = self.model.decoder
        x = dec.embed(prefix)  # (N, t, D)
        for layer in dec.layers:
            x = layer(x, memory, src_mask)
        return dec.output(dec.final_norm(x[:, -1:]))  # (N, 1, V): only the last position
