"""Corpus BLEU and chrF with sacrebleu, reported with their signatures."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from tfcli.errors import DataError


@dataclass(frozen=True)
class Scores:
    """Corpus-level scores and the sacrebleu signatures that make them reproducible."""

    bleu: float
    chrf: float
    bleu_signature: str
    chrf_signature: str
    bleu_detail: str
    sentences: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def score(hypotheses: Sequence[str], references: Sequence[str]) -> Scores:
    """BLEU and chrF of hypotheses against one reference per sentence (sacrebleu defaults)."""
    from sacrebleu.metrics import BLEU, CHRF

    if len(hypotheses) != len(references):
        raise DataError(
            f"{len(hypotheses)} hypotheses but {len(references)} references: "
            "they must have one line per sentence"
        )
    bleu, chrf = BLEU(), CHRF()
    b = bleu.corpus_score(list(hypotheses), [list(references)])
    c = chrf.corpus_score(list(hypotheses), [list(references)])
    return Scores(
        bleu=b.score,
        chrf=c.score,
        bleu_signature=str(bleu.get_signature()),
        chrf_signature=str(chrf.get_signature()),
        bleu_detail=str(b),
        sentences=len(hypotheses),
    )


def bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU alone (for validation)."""
    from sacrebleu.metrics import BLEU

    return BLEU().corpus_score(list(hypotheses), [list(references)]).score


def bleu_signature() -> str:
    """The sacrebleu signature of `bleu` (sacrebleu names it once it has counted the
    references: one per sentence)."""
    from sacrebleu.metrics import BLEU

    metric = BLEU()
    metric.corpus_score([""], [[""]])
    return str(metric.get_signature())
