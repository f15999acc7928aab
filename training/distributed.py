"""Data parallelism for full training: one process per device, started by torchrun (or any launcher
that sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT).

    world = join_from_env()          # gloo on CPU, nccl on CUDA; World(0, 1) when run alone
    net = wrap(module, world)        # DistributedDataParallel when world.size > 1

Each rank takes its own slice of every global micro-batch (see full.py); DDP averages the gradients
on the last micro-batch of a step, so every rank applies the same update and keeps identical weights.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


ALONE = World()  # one process: rank 0 of 1 (a frozen default, shared safely)


def backend() -> str:
    return "nccl" if torch.cuda.is_available() else "gloo"


def join_from_env() -> World:
    """Join the process group the launcher describes (once per process); alone when WORLD_SIZE is unset or 1."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend())
    return World(dist.get_rank(), dist.get_world_size())


def wrap(module: nn.Module, world: World) -> nn.Module:
    if world.size == 1:
        return module
    from torch.nn.parallel import DistributedDataParallel

    dev = next(module.parameters()).device
    # unused parameters exist by design: the contrastive objective never touches lm_head
    return DistributedDataParallel(
        module, device_ids=[dev.index] if dev.type == "cuda" else None, find_unused_parameters=True
    )


def sum_across(value: float, world: World) -> float:
    if world.size == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device="cuda" if backend() == "nccl" else "cpu")
    dist.all_reduce(t)
    return float(t)


def barrier(world: World) -> None:
    if world.size > 1:
        dist.barrier()
