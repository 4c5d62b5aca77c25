"""An epoch's token-budget batches built from the lengths of a prepared corpus's index, and
padded only when a batch is used.

The batches are exactly `batching.epoch_batches`'s: the same generator (seeded with
(seed, epoch)) draws the same tie-breaking keys, the same sort (target length, source
length, key), the same budget rule (`token_batches`) and the same shuffle of the batches, so
a resumed run's position in the epoch means what it meant. The keys are drawn by numpy from
Python's Mersenne Twister state (the same generator and the same 53-bit doubles), which makes
a 5M-pair epoch a fraction of a second instead of a Python loop over pairs.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import overload

import numpy as np

from tfcli.data.batching import Batch
from tfcli.data.prepared import PreparedCorpus


def python_random_doubles(rng: random.Random, n: int) -> np.ndarray:
    """`[rng.random() for _ in range(n)]` as an array, leaving `rng` where that loop would."""
    version, state, gauss = rng.getstate()
    mt = np.random.RandomState()
    mt.set_state(("MT19937", np.array(state[:-1], dtype=np.uint32), state[-1]))
    keys = mt.random_sample(n)
    _, words, pos, _, _ = mt.get_state()
    rng.setstate((version, (*(int(w) for w in words), int(pos)), gauss))
    return keys


def cut_points(sizes: Sequence[int], batch_tokens: int) -> list[int]:
    """Where `token_batches` (max_items 0) starts each group of items with these sizes."""
    starts: list[int] = []
    count = longest = 0
    for pos, size in enumerate(sizes):
        top = longest if longest > size else size
        if count and top * (count + 1) > batch_tokens:
            starts.append(pos - count)
            count, top = 0, size
        count += 1
        longest = top
    if count:
        starts.append(len(sizes) - count)
    return starts


def epoch_plan(
    src_lens: np.ndarray, tgt_lens: np.ndarray, batch_tokens: int, seed: int, epoch: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(order, starts, ends): batch j of the epoch is order[starts[j]:ends[j]].

    Lengths are without EOS/BOS, as `batch_by_tokens` reads them from the examples.
    """
    rng = random.Random(seed * 1_000_003 + epoch)
    keys = python_random_doubles(rng, len(src_lens))
    order = np.lexsort((keys, src_lens, tgt_lens))  # last key first: (tgt, src, key)
    sizes = np.maximum(src_lens, tgt_lens)[order] + 1
    starts = cut_points(sizes.tolist(), batch_tokens)
    ends = [*starts[1:], len(order)]
    shuffled = list(range(len(starts)))
    rng.shuffle(shuffled)  # the permutation rng.shuffle(batches) applies
    pick = np.array(shuffled, dtype=np.int64)
    return order, np.array(starts, np.int64)[pick], np.array(ends, np.int64)[pick]


class EpochBatches(Sequence[Batch]):
    """An epoch's batches, each padded from the memory-mapped ids when it is taken.

    Slicing gives another EpochBatches (a process's share, an accumulation group) without
    padding anything.
    """

    def __init__(
        self, corpus: PreparedCorpus, order: np.ndarray, starts: np.ndarray, ends: np.ndarray
    ) -> None:
        self.corpus, self.order, self.starts, self.ends = corpus, order, starts, ends

    @classmethod
    def of_epoch(
        cls, corpus: PreparedCorpus, batch_tokens: int, seed: int, epoch: int
    ) -> EpochBatches:
        plan = epoch_plan(corpus.src_lens, corpus.tgt_lens, batch_tokens, seed, epoch)
        return cls(corpus, *plan)

    def __len__(self) -> int:
        return len(self.starts)

    def __iter__(self) -> Iterator[Batch]:
        for i in range(len(self)):
            yield self[i]

    @overload
    def __getitem__(self, i: int) -> Batch: ...
    @overload
    def __getitem__(self, i: slice) -> EpochBatches: ...
    def __getitem__(self, i: int | slice) -> Batch | EpochBatches:
        if isinstance(i, slice):
            return EpochBatches(self.corpus, self.order, self.starts[i], self.ends[i])
        start, end = int(self.starts[i]), int(self.ends[i])
        return self.corpus.collate(self.order[start:end])

    def items(self, i: int) -> list[int]:
        """The line numbers of batch i's pairs, in batch order (without padding anything)."""
        start, end = int(self.starts[i]), int(self.ends[i])
        return [int(x) for x in self.corpus.lines[self.order[start:end]]]
