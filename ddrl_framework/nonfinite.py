"""Non-finite values in training: detected where they arise, so that the trainer can name them."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

from ddrl_framework.distributed import World


class NonFinite(Exception):
    """A NaN or inf in ``source`` (e.g. "reward 'brightness'", "loss_policy at sampler step 3")."""

    def __init__(self, source: str):
        super().__init__(source)
        self.source = source


def require_finite(value: Tensor, source: str) -> None:
    if not bool(torch.isfinite(value).all()):
        raise NonFinite(source)


class NonFiniteGuard:
    """Checks of values only one rank sees (its losses, log-probs, gradient norm).

    In one process a check raises at once. Under torchrun a rank only notes the first bad
    source, and :meth:`agree` (called by every rank at the same point, before the optimizer step)
    makes all ranks raise together, so that none is left waiting in a collective.
    """

    def __init__(self, world: World, device: torch.device):
        self.world, self.device = world, device
        self.pending: str | None = None

    def check(self, value: Tensor, source: str) -> None:
        if not self.world.distributed:
            require_finite(value, source)
        elif self.pending is None and not bool(torch.isfinite(value).all()):
            self.pending = source

    def agree(self) -> None:
        if not self.world.distributed:
            return
        flag = torch.tensor([0.0 if self.pending is None else 1.0], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        source, self.pending = self.pending, None
        if flag.item() > 0:
            raise NonFinite(source or "a value on another rank")
