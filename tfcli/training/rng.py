"""The random number generators training draws from, as plain data a checkpoint can hold.

Dropout draws from torch's CPU generator (model/kernels.py) or the CUDA generator of the
process's GPU; the data order has its own seeded `random.Random` per epoch (data/batching.py)
and needs no state. Python's `random` and numpy's generator are saved as well, so that code
drawing from them stays exact on resume too.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

# Rank r > 0 of a torchrun job seeds its dropout with seed + RANK_STRIDE * r: every process draws
# its own masks; rank 0 keeps the single-process stream.
RANK_STRIDE = 1_000_003


def seed_everything(seed: int) -> None:
    """The same seed for torch (CPU and every GPU), Python and numpy: the model's initial
    weights are the same in every process."""
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


def seed_rank(seed: int, rank: int) -> None:
    """Give process `rank` its own dropout stream (after the weights are made)."""
    if rank > 0:
        seed_everything(seed + RANK_STRIDE * rank)


def rng_state() -> dict[str, Any]:
    """This process's generator states: tensors, ints and lists only (weights_only loading)."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "python": [version, list(internal), gauss],
        "numpy": [kind, [int(k) for k in keys], int(pos), int(has_gauss), float(cached)],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Put the generators back where `rng_state()` found them."""
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda", [])
    if cuda and torch.cuda.is_available():
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        else:
            log.warning(
                "the checkpoint holds the generator states of %d GPUs, this machine has %d: "
                "dropout on the GPU does not continue exactly",
                len(cuda),
                torch.cuda.device_count(),
            )
    version, internal, gauss = state["python"]
    random.setstate((int(version), tuple(int(i) for i in internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
