"""The command-line options that several commands share, defined once.

An option left out means "the run's value": None here, and the run's (or the config's)
setting takes over, so no default is written twice. Choices come from the config's Literals.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tfcli.config import TranslatePrecision

# Typer reads these annotations at runtime: Optional[...] (not X | None) works on every Python
# the package supports.
Model = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option(
        "--model", "-m", help="Run directory or checkpoint file \\[default: the latest run]."
    ),
]
Beam = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option(help="Beam size; 1: greedy \\[default: the run's decode.beam].", min=1),
]
BatchTokens = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option(
        "--batch-tokens",
        help="Source tokens per batch \\[default: the run's decode.batch_tokens].",
        min=16,
    ),
]
BatchSize = Annotated[  # the earlier name of --batch-tokens, still accepted
    Optional[int],  # noqa: UP045
    typer.Option("--batch-size", hidden=True, min=16),
]
Device = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(help="auto, cpu, cuda or cuda:N \\[default: the run's decode.device]."),
]
Precision = Annotated[
    Optional[TranslatePrecision],  # noqa: UP045
    typer.Option(
        help="Inference precision; auto: int8 on the CPU, bf16 (else fp16) on CUDA "
        "\\[default: the run's decode.precision]."
    ),
]
Overrides = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Option("--set", help="Override a config key: section.key=value (repeatable)."),
]
OutputDir = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option("--output-dir", "-o", help="Run directory \\[default: runs/CONFIG_NAME]."),
]
Quiet = Annotated[bool, typer.Option("--quiet/--verbose", help="Hide/show progress logs.")]
