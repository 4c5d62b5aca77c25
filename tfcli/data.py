"""Parallel text: read and check files, filter by length, build token-based batches.

Batches are made from length buckets (examples sorted by length, then cut into batches of at
most `batch_tokens` padded tokens), so there is little padding; the order of batches is shuffled
with the seed, differently in every epoch.
"""

from __future__ import annotations

import gzip
import logging
import random
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from tfcli.errors import DataError
from tfcli.tokenizer import BOS_ID, EOS_ID, PAD_ID, Tokenizer

log = logging.getLogger(__name__)


def resolve_path(prefix: str, lang: str) -> Path:
    """`{prefix}.{lang}`, or `{prefix}.{lang}.gz` when only that exists."""
    plain = Path(f"{prefix}.{lang}")
    gz = Path(f"{prefix}.{lang}.gz")
    if plain.exists() or not gz.exists():
        return plain
    return gz


def read_lines(path: str | Path) -> list[str]:
    """All lines of a UTF-8 text file, plain or gzip, without line endings."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, not a text file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path}: broken gzip file ({e})") from None
    return split_lines(raw, str(path))


def split_lines(raw: bytes, name: str) -> list[str]:
    """Decode UTF-8 text into lines; an encoding error names `name` and the line."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"{name}:{line}: not valid UTF-8") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [s.rstrip("\r") for s in lines]


def read_parallel(src_path: str | Path, tgt_path: str | Path) -> tuple[list[str], list[str]]:
    """Read two line-aligned files; a different number of lines is an error naming both."""
    src, tgt = read_lines(src_path), read_lines(tgt_path)
    if len(src) != len(tgt):
        raise DataError(
            f"{src_path} has {len(src)} lines but {tgt_path} has {len(tgt)}: "
            "parallel files must have one line per sentence pair"
        )
    return src, tgt


@dataclass(frozen=True)
class Example:
    """One sentence pair as subword ids (target without BOS/EOS)."""

    index: int
    src: list[int]
    tgt: list[int]


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


@dataclass(frozen=True)
class FilterReport:
    """What length filtering removed, so it is never silent."""

    kept: int
    empty: int
    too_long: int
    bad_ratio: int

    def __str__(self) -> str:
        return (
            f"kept {self.kept} pairs; dropped {self.empty} with an empty side, "
            f"{self.too_long} too long, {self.bad_ratio} with a bad length ratio"
        )


def make_examples(
    src_lines: Sequence[str],
    tgt_lines: Sequence[str],
    src_tok: Tokenizer,
    tgt_tok: Tokenizer,
    max_len: int | None = None,
    max_ratio: float = 0.0,
) -> tuple[list[Example], FilterReport]:
    """Encode sentence pairs and drop empty, too long or badly proportioned ones (counted)."""
    src_ids, tgt_ids = src_tok.encode(src_lines), tgt_tok.encode(tgt_lines)
    examples, empty, too_long, bad_ratio = [], 0, 0, 0
    for i, (s, t) in enumerate(zip(src_ids, tgt_ids)):
        if not s or not t:
            empty += 1
        elif max_len is not None and (len(s) + 1 > max_len or len(t) + 1 > max_len):
            too_long += 1
        elif max_ratio > 0 and max(len(s), len(t)) / min(len(s), len(t)) > max_ratio:
            bad_ratio += 1
        else:
            examples.append(Example(i, s, t))
    return examples, FilterReport(len(examples), empty, too_long, bad_ratio)


def collate(examples: Sequence[Example]) -> Batch:
    """Pad a list of examples into a `Batch`."""
    b = len(examples)
    s_len = max(len(e.src) for e in examples) + 1
    t_len = max(len(e.tgt) for e in examples) + 1
    src = torch.full((b, s_len), PAD_ID, dtype=torch.long)
    tgt_in = torch.full((b, t_len), PAD_ID, dtype=torch.long)
    tgt_out = torch.full((b, t_len), PAD_ID, dtype=torch.long)
    for row, e in enumerate(examples):
        src[row, : len(e.src) + 1] = torch.tensor(e.src + [EOS_ID])
        tgt_in[row, : len(e.tgt) + 1] = torch.tensor([BOS_ID] + e.tgt)
        tgt_out[row, : len(e.tgt) + 1] = torch.tensor(e.tgt + [EOS_ID])
    return Batch(src, tgt_in, tgt_out, [e.index for e in examples])


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
    batches: list[list[Example]] = []
    current: list[Example] = []
    longest = 0
    for i in order:
        e = examples[i]
        size = max(len(e.src), len(e.tgt)) + 1
        if current and max(longest, size) * (len(current) + 1) > batch_tokens:
            batches.append(current)
            current, longest = [], 0
        current.append(e)
        longest = max(longest, size)
    if current:
        batches.append(current)
    return batches


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
