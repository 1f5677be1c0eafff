"""Data-parallel training over processes started by `torchrun` (gloo on CPUs, NCCL on GPUs).

The world comes from the WORLD_SIZE / RANK / LOCAL_RANK variables torchrun sets (or from a process
group a caller has already made). A step's global batch is cut into `grad_accum` micro-batches;
process r trains on micro-batches r, r + W, r + 2W, ... (W processes), and one all-reduce sums
the gradients before the optimiser step. So a run on W processes follows exactly the run of one
process accumulating the same micro-batches: only the grouping of floating-point sums differs, a
checkpoint resumes under any world size, and `grad_accum` must be a multiple of W.

The gradients are reduced by hand rather than through the DistributedDataParallel wrapper:
MxDNA's unit experts are not all used on every micro-batch (DDP's reducer then needs
find_unused_parameters and an extra pass), a micro-batch may be empty on the last step of an
epoch, and a parameter without a gradient on every process must stay without one (AdamW skips
it), which the flags reduced beside the gradients preserve. Only rank 0 writes logs,
checkpoints and models.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist

from mxdna_cli import distributed as places
from mxdna_cli.distributed import World
from mxdna_cli.errors import UsageError


_OWNED: list[bool] = []  # whether join_world made the process group (and so leave_world ends it)


def join_world(device: torch.device) -> tuple[World, torch.device]:
    """The world this process is part of (a single process without torchrun) and its device: under
    torchrun on CUDA each process takes the GPU of its LOCAL_RANK."""
    if dist.is_available() and dist.is_initialized():
        world = World(dist.get_rank(), dist.get_world_size(), places.world().local_rank)
    else:
        world = places.world()
        if not world.distributed:
            return world, device
        if not dist.is_available():
            raise UsageError("torchrun: this torch build has no torch.distributed")
        _OWNED.append(True)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda" and world.distributed:
        device = torch.device("cuda", world.local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    return world, device


def leave_world(world: World) -> None:
    if _OWNED and dist.is_initialized():
        _OWNED.clear()
        dist.destroy_process_group()


def check_micro_batches(grad_accum: int, world: World) -> None:
    if grad_accum < 1:
        raise UsageError("--grad-accum must be at least 1")
    if grad_accum % world.size:
        raise UsageError(
            f"--grad-accum {grad_accum}: with {world.size} processes it must be a multiple of {world.size} "
            f"(each process takes an equal share of a step's micro-batches), e.g. --grad-accum {world.size}"
        )


def my_micro_batches(grad_accum: int, world: World) -> range:
    """Indices of the micro-batches of each step that this process trains on."""
    return range(world.rank, grad_accum, world.size)


def micro_batch_seed(seed: int, step: int, index: int) -> int:
    """The seed of the random draws (router jitter, dropout) of one micro-batch, the same whichever
    process trains on it."""
    return int(np.random.SeedSequence([seed, step, index]).generate_state(1)[0])


def sum_gradients(model: torch.nn.Module, world: World) -> None:
    """Sum every parameter's gradient over the processes (one all-reduce); a parameter that has no
    gradient on any process keeps none."""
    if not world.distributed:
        return
    parameters = [p for p in model.parameters() if p.requires_grad]
    reference = parameters[0]
    pieces = [p.grad.reshape(-1) if p.grad is not None else torch.zeros(p.numel(), dtype=p.dtype, device=p.device)
              for p in parameters]
    flags = torch.tensor([p.grad is not None for p in parameters], dtype=reference.dtype, device=reference.device)
    flat = torch.cat([*pieces, flags])
    dist.all_reduce(flat)
    offset = 0
    flags = flat[-len(parameters):]
    for parameter, present in zip(parameters, flags.tolist()):
        count = parameter.numel()
        if present:
            parameter.grad = flat[offset : offset + count].view_as(parameter).clone()
        else:
            parameter.grad = None
        offset += count


def sum_values(values: list[float], world: World, device: torch.device) -> list[float]:
    """Sum a few numbers over the processes (e.g. the parts of a step's loss)."""
    if not world.distributed:
        return values
    tensor = torch.tensor(values, dtype=torch.float64 if device.type == "cpu" else torch.float32, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def broadcast_flag(flag: bool, world: World, device: torch.device) -> bool:
    """Rank 0's `flag` on every process (e.g. whether to stop early)."""
    if not world.distributed:
        return flag
    tensor = torch.tensor([1 if flag else 0], dtype=torch.int64, device=device)
    dist.broadcast(tensor, 0)
    return bool(tensor.item())
