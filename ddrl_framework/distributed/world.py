"""Data parallelism under ``torchrun``: which rank this process is, and the few collectives the
trainer needs. Without ``torchrun`` (no ``WORLD_SIZE`` in the environment) everything here is a
no-op for a world of one, so single-process code paths are unchanged.

The global batch (``groups x group_size`` rollouts) is split by groups: rank ``r`` of ``W`` takes
groups ``r G/W .. (r+1) G/W - 1``, reads only their data, and rolls them out with its slice of
the noise that a single process would draw; rewards are gathered so that every rank computes the
advantages of the whole batch; gradients are averaged across ranks before each optimizer step
(``sharding``); rank 0 alone writes logs, evaluations and grids; every rank writes its part of
each checkpoint (``checkpoint``).
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator

import attrs
import torch
import torch.distributed as dist

from ddrl_framework.errors import UserError

# How long a rank waits in a collective. Under "ddp" rank 0 evaluates alone while the others wait
# in the next collective, and a large model's evaluation can outlast torch's default (10 minutes
# for NCCL).
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=60)


@attrs.frozen
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def shard(self, count: int, what: str = "train.groups") -> slice:
        """This rank's contiguous share of ``count`` items (``count`` must divide evenly)."""
        if count % self.size:
            raise UserError(f"{what} = {count} does not split over {self.size} ranks: use a multiple "
                            f"of {self.size}")
        share = count // self.size
        return slice(self.rank * share, (self.rank + 1) * share)


def current_world() -> World:
    """The world of this process: from the initialized process group, else from torchrun's
    environment variables, else a world of one."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    size = int(os.environ.get("WORLD_SIZE", 1))
    return World(int(os.environ.get("RANK", 0)), size, int(os.environ.get("LOCAL_RANK", 0)))


def init_world(device_type: str) -> World:
    """Join the process group torchrun set up (nccl on CUDA, gloo on CPU); a world of one joins none."""
    world = current_world()
    if world.distributed and not dist.is_initialized():
        if device_type == "cuda":
            torch.cuda.set_device(world.local_rank)
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo", timeout=COLLECTIVE_TIMEOUT)
    return world


def gather(tensor: torch.Tensor, world: World) -> torch.Tensor:
    """Every rank's ``[n, ...]`` tensor concatenated in rank order (``[W n, ...]``)."""
    if not world.distributed:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(world.size)]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


def average_gradients(params: list[torch.nn.Parameter], world: World) -> None:
    """Average the gradients across ranks with one all-reduce of a flat buffer."""
    if not world.distributed:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world.size
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def average_floats(values: dict[str, float], world: World) -> dict[str, float]:
    """The mean over ranks of each value (every rank must pass the same keys)."""
    if not world.distributed or not values:
        return values
    keys = sorted(values)
    stacked = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(stacked)
    return {k: float(v) / world.size for k, v in zip(keys, stacked.tolist())}


def any_rank(flag: bool, world: World) -> bool:
    """Whether ``flag`` is true on any rank (every rank must call it at the same point)."""
    if not world.distributed:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=_collective_device())
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return value.item() > 0


def _collective_device() -> torch.device | None:
    """Where a small tensor for a collective lives: this rank's GPU under NCCL, else the CPU."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None


@contextlib.contextmanager
def main_first(world: World) -> Iterator[None]:
    """Rank 0 runs the block first (e.g. pretraining into the shared cache), then the others."""
    if world.distributed and not world.is_main:
        dist.barrier()
    yield
    if world.distributed and world.is_main:
        dist.barrier()
