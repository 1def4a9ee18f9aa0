"""Data-parallel training with torch DistributedDataParallel, launched by ``torchrun``.

The same command runs on one process or many: ``torchrun`` sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and ``MASTER_ADDR``/``MASTER_PORT``; without
them the run is a single process and nothing distributed is initialised.
Backend: NCCL on CUDA, gloo on CPU (so the path is testable on a laptop with
two processes on loopback).

Every rank sees the same per-epoch permutation of the training set and takes
its contiguous share of each global batch; DDP averages the gradients, so the
update is the mean over the global batch, as on one process (to rounding).
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from cortex_resnet.errors import SpecError
from cortex_resnet.rate.simulator import resolve_device

__all__ = ["DistContext", "rank_device", "setup_distributed", "teardown_distributed", "shard"]


@dataclass(frozen=True)
class DistContext:
    """Where this process sits: ``rank`` of ``world_size``, and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def all_sum(self, t: torch.Tensor) -> torch.Tensor:
        """Sum a tensor over ranks (identity on one process)."""
        if self.distributed:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def __repr__(self) -> str:
        """One line: kind and key sizes (not the arrays)."""
        return f"DistContext(rank {self.rank} of {self.world_size}, local {self.local_rank}, {self.device})"


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SpecError(name, raw, "an integer (set by torchrun)") from None


def rank_device(device: str | torch.device, world: int, local_rank: int) -> torch.device:
    """This process's device.

    One process: ``auto``/``cuda`` is ``cuda:0``, ``cuda:N`` is itself. Under
    ``torchrun`` (``world > 1``) every CUDA choice, ``cuda:N`` included, becomes
    ``cuda:LOCAL_RANK`` (modulo the visible devices): one GPU per rank, never all
    ranks on the named one (choose the cards with ``CUDA_VISIBLE_DEVICES``).
    """
    dev = resolve_device(device)
    if dev.type != "cuda":
        return dev
    if world > 1 or dev.index is None:
        return torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))
    return dev


def setup_distributed(device: str = "auto") -> DistContext:
    """Initialise the process group when launched by ``torchrun`` and pick this rank's device
    (:func:`rank_device`)."""
    world = _env_int("WORLD_SIZE", 1)
    rank, local = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    dev = rank_device(device, world, local)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world,
                                timeout=datetime.timedelta(minutes=10))
    return DistContext(rank, world, local, dev)


def teardown_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def shard(n: int, ctx: DistContext) -> slice:
    """This rank's contiguous share of ``n`` items (the first ranks take the remainder)."""
    base, extra = divmod(n, ctx.world_size)
    start = ctx.rank * base + min(ctx.rank, extra)
    return slice(start, start + base + (1 if ctx.rank < extra else 0))
