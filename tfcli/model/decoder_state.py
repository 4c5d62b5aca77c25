"""What incremental decoding keeps between steps: the decoder's key/value caches.

Notation as in layers.py: N sentences, G hypotheses per sentence (the beams; 1 for greedy),
so N*G hypothesis rows; T positions decoded so far, S source length, H heads, E head size.

For every decoder layer the state holds
    self-attention   keys and values of every position so far, (N*G, H, T, E) each
    cross-attention  the encoder output projected to keys and values, (N, H, S, E) each,
                     one row per source sentence, shared by its G hypotheses
All of them contiguous, so that a step's attention runs as batched matmuls over N*G*H rows
(kernels.attend_few) without copying them first.

Its rules:
- `append` adds one step's keys and values and returns all of them;
- `reorder(rows)` says which hypothesis row each row continues (beam search, every step). It
  is applied lazily: the next `append` of each layer selects the rows in the same copy that
  makes room for the new position, one pass over the cache per step;
- `select_sentences(keep)` drops finished sentences: their G hypothesis rows from the
  self-attention caches (lazily, as a reorder) and their row from the cross-attention caches.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

KeysValues = tuple[torch.Tensor, torch.Tensor]


class DecoderState:
    """The caches of every decoder layer for one batch being decoded step by step."""

    def __init__(self, layers: int, beams: int = 1) -> None:
        self.beams = beams  # G
        self._kv: list[KeysValues | None] = [None] * layers  # (N*G, H, T, E) each, per layer
        self._order: list[torch.Tensor | None] = [None] * layers  # (N*G,) rows not yet applied
        self._cross: list[KeysValues | None] = [None] * layers  # (N, H, S, E) each

    @property
    def length(self) -> int:
        """T, the positions decoded so far."""
        kv = self._kv[0]
        return 0 if kv is None else kv[0].size(2)

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> KeysValues:
        """Append this step's keys and values, (N*G, H, L, E) each, to `layer`'s self-attention
        cache and return all of them, (N*G, H, T + L, E) each, in the rows' current order."""
        past, order = self._kv[layer], self._order[layer]
        self._order[layer] = None
        if past is None:
            out = k.contiguous(), v.contiguous()
        else:
            out = tuple(_grown(old, new, order) for old, new in zip(past, (k, v)))
        self._kv[layer] = out
        return out

    def cross_keys_values(self, layer: int, project: Callable[[], KeysValues]) -> KeysValues:
        """`layer`'s cross-attention keys and values: `project()` at the first step, then kept."""
        cached = self._cross[layer]
        if cached is None:
            cached = self._cross[layer] = project()
        return cached

    def reorder(self, rows: torch.Tensor) -> None:
        """Row i continues hypothesis row rows[i] (N*G,); composed with an order not yet applied."""
        self._order = [rows if o is None else o.index_select(0, rows) for o in self._order]

    def select_sentences(self, keep: torch.Tensor) -> None:
        """Keep only the sentences `keep` (N',): their hypothesis rows and cross-attention rows."""
        g = self.beams
        offsets = torch.arange(g, device=keep.device)
        self.reorder((keep[:, None] * g + offsets).view(-1))  # (N'*G,)
        self._cross = [
            None if kv is None else (kv[0].index_select(0, keep), kv[1].index_select(0, keep))
            for kv in self._cross
        ]


def _grown(past: torch.Tensor, new: torch.Tensor, order: torch.Tensor | None) -> torch.Tensor:
    """past (N*G, H, T, E) with its rows in `order` (None: as they are), then new (N*G, H, L, E)
    after it: one copy of the cache per step."""
    t = past.size(2)
    out = new.new_empty((new.size(0), new.size(1), t + new.size(2), new.size(3)))
    if order is None:
        out[:, :, :t] = past
    else:
        torch.index_select(past, 0, order, out=out[:, :, :t])
    out[:, :, t:] = new
    return out
