"""Sentence pairs as subword ids, and the length filters that drop some of them (counted)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tfcli.data.tokenizer import Tokenizer


@dataclass(frozen=True)
class Example:
    """One sentence pair as subword ids (target without BOS/EOS)."""

    index: int
    src: list[int]
    tgt: list[int]


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
    """Encode sentence pairs and drop empty, too long or badly proportioned ones (counted).

    A side's length counts its EOS (or BOS) token, as training sees it.
    """
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
