"""CTranslate2 in bench_translate.py: tfcli's weights exported, then translated batch by batch."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

from tfcli.checkpoint import find_checkpoint


def ct2_translator(run: Path, workdir: Path, device: torch.device) -> Any | None:
    """CTranslate2 on the same weights, or None (with a note) when it is not installed."""
    try:
        import ctranslate2
    except ImportError:
        print("note: ctranslate2 is not installed; skipping it", file=sys.stderr)
        return None
    from tfcli.export import export_ctranslate2

    ckpt_path = find_checkpoint(run)
    out = export_ctranslate2(ckpt_path, workdir / "ct2")
    return ctranslate2.Translator(
        str(out),
        device="cuda" if device.type == "cuda" else "cpu",
        inter_threads=1,
        intra_threads=torch.get_num_threads(),
    )


def run_ct2(
    translator: Any,
    batches: list[list[list[str]]],
    limits: list[int],
    beam: int,
    alpha: float,
    banned: list[list[str]],
) -> list[list[str]]:
    """translate_batch per batch of source pieces; returns the best pieces per sentence.

    `limits`: the longest output per batch, EOS included. `banned`: the PAD and BOS pieces,
    which tfcli.search never produces either.
    """
    out: list[list[str]] = []
    for pieces, limit in zip(batches, limits):
        results = translator.translate_batch(
            pieces,
            beam_size=beam,
            length_penalty=alpha,
            max_decoding_length=limit - 1,  # CTranslate2 does not count EOS
            max_batch_size=0,
            suppress_sequences=banned,
        )
        out.extend(r.hypotheses[0] for r in results)
    return out
