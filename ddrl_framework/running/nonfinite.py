"""Non-finite values in training: detected where they arise, so that the trainer can name them."""

from __future__ import annotations

import torch
from torch import Tensor

from ddrl_framework.distributed.world import World, any_rank


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

    def __init__(self, world: World):
        self.world = world
        self.pending: str | None = None

    def check(self, value: Tensor, source: str) -> None:
        if not self.world.distributed:
            require_finite(value, source)
        elif self.pending is None and not bool(torch.isfinite(value).all()):
            self.pending = source

    def reset(self) -> None:
        """Forget a noted source (after the iteration that raised it was skipped or stopped)."""
        self.pending = None

    def agree(self) -> None:
        if not self.world.distributed:
            return
        source, self.pending = self.pending, None
        if any_rank(source is not None, self.world):
            raise NonFinite(source or "a value on another rank")
