"""torchrun's environment: DistributedDataParallel over processes, or a single process.

Every process loads the run's files itself (tokenizers, the checkpoint to resume): on several
machines the run directory must be on a filesystem they share. Process 0 alone validates and
writes; what it decides (the checkpoint to resume, when to stop, an error) reaches the others
through `from_main` and `main_does`.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from typing import Any, TypeVar

import torch

from tfcli.errors import TfcliError

T = TypeVar("T")

# How long a process waits in a collective call. The others wait while process 0 validates
# (dev loss and BLEU), which for a large dev set takes longer than PyTorch's default of ten
# minutes; the test set is decoded after the other processes have finished.
COLLECTIVE_TIMEOUT = datetime.timedelta(hours=2)


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
            torch.distributed.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT)

    def close(self) -> None:
        if self.world > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()

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

    def from_main(self, value: T) -> T:
        """Rank 0's `value` on every process: rank 0 alone validates, so it decides when to stop."""
        if self.world == 1:
            return value
        box = [value]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def main_does(self, fn: Callable[[], T]) -> T | None:
        """fn() on rank 0 alone; a TfcliError it raises is raised on every process."""
        result, error = None, None
        if self.main:
            try:
                result = fn()
            except TfcliError as e:
                if self.world == 1:
                    raise
                error = str(e)
        error = self.from_main(error)
        if error is not None:
            raise TfcliError(error)
        return result

    def sum(self, value: int) -> int:
        """The sum of `value` over the processes."""
        if self.world == 1:
            return value
        box = torch.tensor([value], dtype=torch.float64, device=self._device())
        torch.distributed.all_reduce(box)
        return int(box.item())

    def total(self, values: torch.Tensor) -> torch.Tensor:
        """The element-wise sum of a float64 CPU tensor over the processes."""
        if self.world == 1:
            return values
        box = values.to(self._device())
        torch.distributed.all_reduce(box)
        return box.cpu()

    def any(self, flags: torch.Tensor) -> list[bool]:
        """For each flag (a bool tensor of any device), whether it is set on some process."""
        if self.world > 1:
            flags = flags.to(self._device(), torch.int32)
            torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
        return [bool(f) for f in flags.tolist()]

    def gather(self, value: Any) -> list[Any]:
        """Every process's `value`, by rank, on every process."""
        if self.world == 1:
            return [value]
        out: list[Any] = [None] * self.world
        torch.distributed.all_gather_object(out, value)
        return out

    def _device(self) -> torch.device:
        """Where collective tensors live: nccl needs them on this process's GPU."""
        if torch.distributed.get_backend() == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")
