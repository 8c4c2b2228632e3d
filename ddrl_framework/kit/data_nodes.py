"""torchdata.nodes building blocks shared by data-source plugins."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torchdata.nodes import BaseNode, Batcher, Loader, Mapper

from ddrl_framework.distributed.world import current_world
from ddrl_framework.types import DataBatch


class ShuffledIndices(BaseNode[int]):
    """An endless stream of ``range(n)`` indices, reshuffled each epoch from ``(seed, epoch)``.

    Its state is ``(epoch, position)``, so a restored stream continues at the same index.
    """

    def __init__(self, n: int, seed: int):
        super().__init__()
        self.n, self.seed = n, seed

    def reset(self, initial_state: dict[str, Any] | None = None) -> None:
        super().reset(initial_state)
        state = initial_state or {"epoch": 0, "position": 0}
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._order = self._permutation(self.epoch)

    def _permutation(self, epoch: int) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        return torch.randperm(self.n, generator=generator).tolist()

    def next(self) -> int:
        if self.position == self.n:
            self.epoch, self.position = self.epoch + 1, 0
            self._order = self._permutation(self.epoch)
        index = self._order[self.position]
        self.position += 1
        return index

    def get_state(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position}


class BatchLoader:
    """A resumable iterator of ``DataBatch``: ``Loader(Mapper(Batcher(ShuffledIndices)))``.

    Under ``torchrun`` every rank walks the same index stream and collates (reads) only its own
    contiguous share of each batch, so the ranks together see what one process would.
    """

    def __init__(self, n: int, batch_size: int, seed: int, collate: Callable[[Sequence[int]], DataBatch]):
        world = current_world()
        if world.distributed:
            share = world.shard(batch_size, "the batch size")
            inner = collate
            collate = lambda positions: inner(positions[share])  # noqa: E731
        node = Mapper(Batcher(ShuffledIndices(n, seed), batch_size=batch_size), collate)
        self._loader = Loader(node)
        self._iterator = None

    def __iter__(self) -> BatchLoader:
        return self

    def __next__(self) -> DataBatch:
        if self._iterator is None:
            self._iterator = iter(self._loader)
        return next(self._iterator)

    def state_dict(self) -> dict[str, Any]:
        return self._loader.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._loader.load_state_dict(state)
        self._iterator = None
