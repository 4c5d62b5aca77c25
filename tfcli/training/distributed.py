"""torchrun's environment: DistributedDataParallel over processes, or a single process."""

from __future__ import annotations

import os
from typing import TypeVar

import torch

T = TypeVar("T")


class Distributed:
    """torchrun's environment (WORLD_SIZE, RANK, LOCAL_RANK), or a single process."""

    def __init__(self) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))

    @property
    def main(self) -> bool:
        """Process 0, which validates, logs and writes the run directory."""
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """This process's GPU when several processes share a machine's GPUs."""
        if device.type == "cuda" and self.world > 1:
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        return device

    def setup(self, device: torch.device) -> None:
        if self.world > 1 and not torch.distributed.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            torch.distributed.init_process_group(backend)

    def wrap(self, module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """`module` in DistributedDataParallel when there are several processes."""
        if self.world == 1:
            return module
        ids = [device.index] if device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(module, device_ids=ids)

    def share(self, batches: list[T]) -> list[T]:
        """This process's share of an epoch: every WORLD_SIZE-th batch, as many on every rank."""
        usable = len(batches) - len(batches) % self.world
        return batches[self.rank : usable : self.world]

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def from_main(self, value: str | None) -> str | None:
        """Rank 0's `value` on every process: rank 0 alone validates, so it decides when to stop."""
        if self.world == 1:
            return value
        box = [value]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]
