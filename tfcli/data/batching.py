"""Token-budget batches for training and translation, and padding them into tensors.

One grouping rule serves both (`token_batches`): items are taken in a given order (sorted by
length, so neighbours have similar lengths) and cut into groups whose padded size, the longest
item times the number of items, stays within a token budget. Training shuffles the order of
its batches with the seed, differently in every epoch.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch.nn.utils.rnn import pad_sequence

from tfcli.data.pairs import Example
from tfcli.data.tokenizer import BOS_ID, EOS_ID, PAD_ID


def token_batches(
    order: Iterable[int], sizes: Sequence[int], batch_tokens: int, max_items: int = 0
) -> list[list[int]]:
    """Cut the indices `order` into groups of at most `batch_tokens` padded tokens.

    sizes[i] is item i's length with its special tokens. A group also holds at most
    `max_items` items (0: no limit); an item longer than the budget forms its own group.
    """
    groups: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        size = sizes[i]
        too_big = max(longest, size) * (len(current) + 1) > batch_tokens
        if current and (too_big or len(current) == max_items):
            groups.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, size)
    if current:
        groups.append(current)
    return groups


def pad(seqs: Sequence[Sequence[int]], first: int | None = None, last: int | None = None):
    """Id lists -> (B, L) long tensor, each row `first` + ids + `last`, PAD on the right."""
    head, tail = [first] if first is not None else [], [last] if last is not None else []
    rows = [torch.tensor([*head, *s, *tail], dtype=torch.long) for s in seqs]
    return pad_sequence(rows, batch_first=True, padding_value=PAD_ID)


def pad_sources(seqs: Sequence[Sequence[int]]) -> torch.Tensor:
    """Source id lists -> (B, S) with EOS appended and PAD on the right."""
    return pad(seqs, last=EOS_ID)


@dataclass
class Batch:
    """Padded tensors for one batch.

    Shape:
        src: (B, S) source ids ending in EOS; tgt_in: (B, T) BOS + target;
        tgt_out: (B, T) target + EOS. Padding is PAD_ID on the right.
    """

    src: torch.Tensor
    tgt_in: torch.Tensor
    tgt_out: torch.Tensor
    indices: list[int]

    @property
    def src_tokens(self) -> int:
        return int((self.src != PAD_ID).sum())

    @property
    def tgt_tokens(self) -> int:
        return int((self.tgt_out != PAD_ID).sum())

    def to(self, device: torch.device) -> Batch:
        nb = device.type == "cuda"
        return Batch(
            self.src.to(device, non_blocking=nb),
            self.tgt_in.to(device, non_blocking=nb),
            self.tgt_out.to(device, non_blocking=nb),
            self.indices,
        )


def collate(examples: Sequence[Example]) -> Batch:
    """Pad a list of examples into a `Batch`."""
    tgt = [e.tgt for e in examples]
    return Batch(
        pad_sources([e.src for e in examples]),
        pad(tgt, first=BOS_ID),
        pad(tgt, last=EOS_ID),
        [e.index for e in examples],
    )


def batch_by_tokens(
    examples: Sequence[Example], batch_tokens: int, rng: random.Random | None = None
) -> list[list[Example]]:
    """Cut examples into batches of at most `batch_tokens` padded tokens (the longer side).

    Examples are sorted by length first (ties broken by `rng` when given), so each batch holds
    sentences of similar length. A single example longer than the budget forms its own batch.
    """
    keys = [rng.random() if rng else 0.0 for _ in examples]
    order = sorted(
        range(len(examples)),
        key=lambda i: (len(examples[i].tgt), len(examples[i].src), keys[i]),
    )
    sizes = [max(len(e.src), len(e.tgt)) + 1 for e in examples]
    return [[examples[i] for i in g] for g in token_batches(order, sizes, batch_tokens)]


def epoch_batches(
    examples: Sequence[Example], batch_tokens: int, seed: int, epoch: int
) -> Iterator[Batch]:
    """The batches of one epoch in a shuffled order that depends only on (seed, epoch)."""
    rng = random.Random(seed * 1_000_003 + epoch)
    batches = batch_by_tokens(examples, batch_tokens, rng)
    rng.shuffle(batches)
    for group in batches:
        yield collate(group)


def padding_share(batches: Sequence[Batch]) -> float:
    """Share of padding positions among all source and target positions."""
    total = sum(b.src.numel() + b.tgt_out.numel() for b in batches)
    real = sum(b.src_tokens + b.tgt_tokens for b in batches)
    return 1.0 - real / max(total, 1)
