"""This rank's share of an iteration: ``train.groups`` prompts of ``group_size`` rollouts each are
split by groups over the ranks, and each rank draws its slice of the noise that one process would
draw for the whole batch, so that a run's samples do not depend on how many ranks share it."""

from __future__ import annotations

import torch

from ddrl_framework.distributed.world import World
from ddrl_framework.types import DataBatch, NoiseStream, take


class GroupShare:
    """Rank ``r`` of ``W`` takes groups ``r G/W .. (r+1) G/W - 1`` (``G`` must divide evenly)."""

    def __init__(self, world: World, groups: int, group_size: int):
        self.world, self.groups, self.group_size = world, groups, group_size
        self.slice = world.shard(groups)  # this rank's groups

    @property
    def members(self) -> slice:
        """This rank's rollouts among the ``groups x group_size`` of an iteration."""
        return slice(self.slice.start * self.group_size, self.slice.stop * self.group_size)

    def local(self, batch: DataBatch) -> DataBatch:
        """This rank's groups of a batch (built-in sources already read only those: ``BatchLoader``)."""
        if not self.world.distributed or len(batch) == self.slice.stop - self.slice.start:
            return batch
        return take(batch, self.slice.stop, self.slice.start)

    def noise(self, sample_shape: tuple[int, ...], num_steps: int, generator: torch.Generator,
              device: torch.device) -> tuple[torch.Tensor, torch.Generator | NoiseStream]:
        """Initial noise and the generator (or, under torchrun, the pre-drawn step noise) for this
        rank's rollouts: its slice of what one process would draw."""
        shape = (self.groups * self.group_size, *sample_shape)
        noise = torch.randn(shape, generator=generator, device=device)[self.members]
        if not self.world.distributed:
            return noise, generator
        steps = [torch.randn(shape, generator=generator, device=device)[self.members] for _ in range(num_steps)]
        return noise, NoiseStream(torch.stack(steps))
