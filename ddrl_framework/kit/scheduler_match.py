"""Does a sampler's zero-noise step equal the scheduler it names? A sampler with zero noise must
equal the deterministic (ODE / DDIM eta = 0) sampler (docs/concepts.md, "Sampler").

A sampler names a reference scheduler by having ``deterministic()`` (itself at zero noise) and
``scheduler_step(policy, x_k, k, cond)`` (that scheduler's step ``k``, e.g. diffusers'
``DDIMScheduler.step`` at ``eta = 0``). ``ddrl doctor`` and the sampler contract suite both
measure the gap here, with one relative tolerance.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
from torch import Tensor

from ddrl_framework.protocols import NamesAScheduler

RELATIVE_TOLERANCE = 1e-4


def names_a_scheduler(sampler: Any) -> bool:
    """Whether ``sampler`` has ``deterministic()`` and ``scheduler_step(...)`` to compare."""
    return isinstance(sampler, NamesAScheduler)


@attrs.frozen(kw_only=True)
class SchedulerGap:
    """The largest ``|deterministic mean - scheduler step|`` over the steps compared, at
    ``worst_step``; ``scale`` the largest ``|scheduler step|`` (what the tolerance is relative to)."""

    worst: float
    worst_step: int
    scale: float

    @property
    def tolerance(self) -> float:
        return RELATIVE_TOLERANCE * max(1.0, self.scale)

    @property
    def ok(self) -> bool:
        return self.worst <= self.tolerance


@torch.no_grad()
def scheduler_gap(sampler: Any, policy: Any, latents: Tensor, cond: Any) -> SchedulerGap:
    """Compare ``sampler.deterministic().transition(...).mean`` with ``sampler.scheduler_step(...)``
    at every step ``k`` from the state ``latents[k]`` (``[K + 1, B, ...]``, e.g. a rollout's)."""
    ode = sampler.deterministic()
    worst, worst_step, scale = 0.0, 0, 0.0
    for k in range(sampler.num_steps):
        ours = ode.transition(policy, latents[k], k, cond).mean.float()
        theirs = sampler.scheduler_step(policy, latents[k], k, cond).float()
        gap = float((ours - theirs).abs().max())
        if gap > worst or k == 0:
            worst, worst_step = gap, k
        scale = max(scale, float(theirs.abs().max()))
    return SchedulerGap(worst=worst, worst_step=worst_step, scale=scale)
