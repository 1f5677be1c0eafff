"""torchrun: which process this is among how many, the process group, and moving objects between
ranks. Read from torchrun's environment (WORLD_SIZE, RANK, LOCAL_RANK); one process when unset.

The group is started on first use (gloo on the CPU, NCCL on CUDA devices), so a single-process run
never touches torch.distributed.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from typing import Any

from mxdna_cli.errors import UsageError


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"${name}={value!r}: not an integer (torchrun sets it)") from None


@dataclass(frozen=True)
class World:
    """This process's place among the ranks of a torchrun job (rank 0 of 1 without torchrun)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes outputs and reports progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def broadcast(self, value: Any) -> Any:
        """Rank 0's `value`, on every rank."""
        if not self.distributed:
            return value
        import torch.distributed as dist

        box = [value if self.main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: Any) -> list[Any] | None:
        """Every rank's `value`, in rank order, on rank 0 (None elsewhere)."""
        if not self.distributed:
            return [value]
        import torch.distributed as dist

        gathered: list[Any] | None = [None] * self.size if self.main else None
        dist.gather_object(value, gathered, dst=0)
        return gathered

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()


def world() -> World:
    """This process's place, from torchrun's environment (no process group is started)."""
    size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    if size < 1 or not 0 <= rank < size:
        raise UsageError(f"$RANK={rank} and $WORLD_SIZE={size} do not fit together")
    return World(rank=rank, size=size, local_rank=_env_int("LOCAL_RANK", 0))


def start(device_type: str = "cpu") -> World:
    """The process group of a torchrun job, started if it is not yet (gloo on CPU, NCCL on CUDA)."""
    place = world()
    if place.distributed:
        import torch
        import torch.distributed as dist

        if not dist.is_initialized():
            if device_type == "cuda":
                torch.cuda.set_device(place.local_rank)
            dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
            atexit.register(_leave)
    return place


def finish() -> None:
    """A run that succeeded: wait for every rank before leaving (a rank that exits while another
    still talks to it makes gloo abort). Not on failure: a rank that failed alone must not wait for
    the others, which then fail on its closed connection instead of hanging."""
    if not world().distributed:
        return  # one process: torch is not even imported for this
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _leave() -> None:
    """At exit: take the process group down."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def share(costs: list[int], size: int) -> list[int]:
    """The rank each item goes to: longest first to the least-loaded rank (ties to the lower rank),
    so that ranks get about the same work; deterministic, so every rank computes the same shares."""
    owner = [0] * len(costs)
    load = [0] * size
    for item in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        rank = min(range(size), key=lambda r: (load[r], r))
        owner[item] = rank
        load[rank] += costs[item]
    return owner
