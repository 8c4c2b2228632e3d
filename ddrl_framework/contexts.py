"""What the trainer hands a regularizer or a metric: frozen attrs classes that carry the policy and
the sampler beside the value objects of ``ddrl_framework.types`` (docs/writing-a-plugin.md, "What
the trainer hands a plugin")."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs
import torch
from torch import Tensor

from ddrl_framework.denoising import Policy, Sampler
from ddrl_framework.types import DataBatch, ExtraStates, Gaussian, Trajectory


@attrs.frozen(kw_only=True)
class StepContext:
    """What a regularizer's ``loss`` sees at trained step ``step`` of one iteration.

    ``transition`` is the policy's (with gradients) at ``trajectory.latents[step]`` (None only
    while the optional ``extra_states`` is asked, before it is computed); ``sampler`` the sampler
    whose step it is (the trainer always sets it);
    ``reference`` the frozen reference policy (None unless ``needs_reference``);
    ``reference_transition`` its transition at the same state (None unless
    ``needs_reference_transition``); ``data`` the iteration's data batch, one member per group
    (None unless ``needs_data``); ``extra_states`` what the regularizer's ``extra_states``
    returned, and ``extra_transition`` the policy's transition there (with gradients), from the
    same network call as ``transition`` (both None when it has none, or returned None).
    """

    policy: Policy
    step: int
    is_first_trained_step: bool
    trajectory: Trajectory
    group_size: int
    transition: Gaussian | None
    sampler: Sampler | None = None
    reference: Policy | None = None
    reference_transition: Gaussian | None = None
    data: DataBatch | None = None
    generator: torch.Generator | None = None
    extra_states: ExtraStates | None = None
    extra_transition: Gaussian | None = None


@attrs.frozen(kw_only=True)
class UpdateContext:
    """What a regularizer's optional ``update_loss`` sees, once per optimizer step: the policy,
    the frozen reference (None unless ``needs_reference``), the iteration's rollout and data
    (None unless ``needs_data``)."""

    policy: Policy
    reference: Policy | None
    trajectory: Trajectory
    group_size: int
    data: DataBatch | None
    generator: torch.Generator | None


@attrs.frozen(kw_only=True)
class RolloutContext:
    """What a regularizer's optional ``reward_term`` sees after a rollout, before the advantages:
    this rank's trajectories (recorded with the rollout policy's means) and their conditions, the
    sampler, and the frozen reference (None unless ``needs_reference``)."""

    policy: Policy
    reference: Policy | None
    sampler: Sampler
    trajectory: Trajectory
    cond: Any
    group_size: int


@attrs.frozen(kw_only=True)
class EvalContext:
    """What a metric sees: ``N`` evaluation samples from fixed noise, and what they came from.

    ``samples``: pixels in [0, 1] ``[N, ...]``; ``rewards``: the weighted reward ``[N]``;
    ``score(pixels, prompts)``: the same weighted reward for any pixels (e.g. held-out data);
    ``held_out``: the data source's held-out split; ``reference``: the frozen reference policy
    (None unless a metric ``needs_reference``). When data rather than a policy's samples are
    evaluated (the reference values of a target), ``trajectory`` and ``cond`` are None.
    """

    policy: Policy
    reference: Policy | None
    sampler: Sampler
    trajectory: Trajectory | None
    cond: Any
    samples: Tensor
    prompts: tuple[str, ...]
    rewards: Tensor
    score: Callable[[Tensor, Sequence[str]], Tensor]
    held_out: DataBatch


