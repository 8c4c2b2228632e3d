"""What a role's output must be, each checked by one function: the run (``evaluation.scoring``,
``running.guards``), ``ddrl doctor`` and the contract suites (``ddrl_framework.testing``) all
call these, so a broken plugin is reported with the same words wherever it is caught.

Each check raises a ``ValueError`` that names the component (``name``) and what was expected;
the caller adds where it was caught (a run stops with a ``TrainingError``, a suite fails).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import attrs
import torch
from torch import Tensor

from ddrl_framework.roles import LOSS_PREFIX


def check_reward_output(values: Any, batch_size: int, name: str) -> None:
    """``values`` is what the RewardModel protocol says: one real value per sample, shape ``[B]``."""
    expected = f"expected one float per sample, shape [{batch_size}] (RewardModel protocol)"
    if not isinstance(values, Tensor):
        raise ValueError(f"{name} returned a {type(values).__name__}; {expected}")
    if values.shape != (batch_size,) or values.dtype.is_complex:
        raise ValueError(f"{name} returned shape {list(values.shape)} {values.dtype}; {expected}")


def check_regularizer_losses(losses: Any, name: str) -> None:
    """``losses`` is what the Regularizer protocol says: a dict of ``loss_*`` scalar float tensors
    (``name`` says whose method returned it: ``"regularizer 'kl': loss()"``)."""
    expected = "expected a dict of 'loss_*' names to scalar float tensors (Regularizer protocol)"
    if not isinstance(losses, dict):
        raise ValueError(f"{name} returned a {type(losses).__name__}; {expected}")
    for key, value in losses.items():
        if not (isinstance(key, str) and key.startswith(LOSS_PREFIX)):
            raise ValueError(f"{name} returned the key {key!r}; {expected}")
        if not isinstance(value, Tensor) or value.ndim != 0 or not value.dtype.is_floating_point:
            got = f"shape {list(value.shape)} {value.dtype}" if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(f"{name}['{key}'] is {got}; {expected}")


def check_metric_output(values: Any, name: str) -> None:
    """``values`` is what the Metric protocol says: a dict of names to finite floats."""
    expected = "expected a dict of names to finite floats (Metric protocol)"
    if not isinstance(values, dict):
        raise ValueError(f"{name} returned a {type(values).__name__}; {expected}")
    for key, value in values.items():
        try:
            finite = isinstance(key, str) and math.isfinite(float(value))
        except (TypeError, ValueError, RuntimeError):
            finite = False
        if not finite:
            raise ValueError(f"{name} returned {key!r}: {value!r}; {expected}")


@attrs.frozen(kw_only=True)
class RatioGap:
    """``max |ratio - 1|`` of the on-policy ratio over the steps compared, at ``worst_step``; the
    steps whose recomputed log-prob carries no gradient (every step, under ``torch.no_grad``)."""

    worst: float
    worst_step: int
    without_gradient: tuple[int, ...] = ()

    @property
    def ok(self) -> bool:
        """The ratio is exactly 1 (bitwise): the training pass recomputes the rollout's log-probs."""
        return self.worst == 0.0

    def message(self) -> str:
        return (f"step {self.worst_step}: on-policy ratio differs from 1 by {self.worst:.3g}; expected exactly 1 "
                "(the training pass must recompute the rollout's log-probs bit for bit)")


def on_policy_ratio_gap(sampler: Any, policy: Any, trajectory: Any, cond: Any, steps: Sequence[int]) -> RatioGap:
    """``exp(transition(...).log_prob(x_{k+1}) - trajectory.log_probs[k])`` against 1 at each of
    ``steps``, on the rollout's own states (gradients as the caller's grad mode has them)."""
    worst, worst_step, without_gradient = 0.0, steps[0] if steps else 0, []
    for k in steps:
        log_prob = sampler.transition(policy, trajectory.latents[k], k, cond).log_prob(trajectory.latents[k + 1])
        if not log_prob.requires_grad:
            without_gradient.append(k)
        ratio = torch.exp(log_prob.detach() - trajectory.log_probs[k])
        gap = float((ratio - 1).abs().max())
        if gap > worst or gap != gap:  # NaN counts as the worst
            worst, worst_step = gap, k
    return RatioGap(worst=worst, worst_step=worst_step, without_gradient=tuple(without_gradient))
