"""One network call for a trained step's rollout states and a regularizer's extra states.

A regularizer that needs the policy's transition at other states of the same step (DDRL's data
noised to the step's timestep) declares them with ``extra_states``; :func:`fused_transition` runs
both through one ``sampler.transition`` and splits the result. One call of batch ``B + N``
costs less than two of ``B`` and ``N``: the network's fixed cost per call is paid once, and the
backward pass is one graph. Where the conditions cannot be joined (a policy-specific type
:func:`concat_conditions` does not know), the two calls are made separately.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
from torch import Tensor

from ddrl_framework.contexts import StepContext
from ddrl_framework.protocols import HasExtraStates
from ddrl_framework.types import ExtraStates, Gaussian


class CannotJoin(TypeError):
    """Two conditions whose structure :func:`concat_conditions` cannot join along the batch."""


def concat_conditions(a: Any, b: Any) -> Any:
    """``a`` and ``b`` joined along the batch: tensors by ``torch.cat``, attrs instances, dicts,
    tuples and lists field by field; other values (a guidance scale, None) must be equal."""
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        return torch.cat([a, b])
    if type(a) is not type(b):
        raise CannotJoin(f"cannot join conditions of types {type(a).__name__} and {type(b).__name__}")
    if attrs.has(type(a)):
        fields = {f.name: concat_conditions(getattr(a, f.name), getattr(b, f.name)) for f in attrs.fields(type(a))}
        return attrs.evolve(a, **fields)
    if isinstance(a, dict):
        if a.keys() != b.keys():
            raise CannotJoin(f"cannot join condition dicts with keys {sorted(a)} and {sorted(b)}")
        return {key: concat_conditions(a[key], b[key]) for key in a}
    if isinstance(a, (tuple, list)) and len(a) == len(b):
        return type(a)(concat_conditions(x, y) for x, y in zip(a, b, strict=True))
    if a == b:
        return a
    raise CannotJoin(f"cannot join conditions {a!r} and {b!r}")


def split_gaussian(joined: Gaussian, first: int) -> tuple[Gaussian, Gaussian]:
    """A transition of a joined batch as the transitions of its first ``first`` members and the rest."""
    std = joined.std
    per_member = std.dim() > 0 and std.shape[0] == joined.mean.shape[0]
    head_std, tail_std = (std[:first], std[first:]) if per_member else (std, std)
    return (Gaussian(mean=joined.mean[:first], std=head_std), Gaussian(mean=joined.mean[first:], std=tail_std))


def fused_transition(sampler: Any, policy: Any, x_k: Tensor, k: int, cond: Any,
                     extra: ExtraStates | None) -> tuple[Gaussian, Gaussian | None]:
    """The policy's transitions at step ``k`` from ``x_k`` ``[B, ...]`` under ``cond``, and from
    ``extra.latents`` under ``extra.cond`` (None without ``extra``), by one network call where
    the conditions join, else by two."""
    if extra is None:
        return sampler.transition(policy, x_k, k, cond), None
    try:
        joined_cond = concat_conditions(cond, extra.cond)
    except CannotJoin:
        return sampler.transition(policy, x_k, k, cond), sampler.transition(policy, extra.latents, k, extra.cond)
    joined = sampler.transition(policy, torch.cat([x_k, extra.latents.to(x_k.dtype)]), k, joined_cond)
    return split_gaussian(joined, x_k.shape[0])


def with_transitions(context: StepContext, regularizer: Any, cond: Any, *, ask_extra: bool = True) -> StepContext:
    """``context`` (built with ``transition`` None) with the policy's transition at
    ``trajectory.latents[step]`` under ``cond`` and, where the regularizer's optional
    ``extra_states`` returns states (``ask_extra``), the transition there, from the same call."""
    asks = ask_extra and isinstance(regularizer, HasExtraStates)
    extra = regularizer.extra_states(context) if asks else None
    k = context.step
    step, extra_step = fused_transition(context.sampler, context.policy, context.trajectory.latents[k], k, cond,
                                        extra)
    return attrs.evolve(context, transition=step, extra_states=extra, extra_transition=extra_step)
