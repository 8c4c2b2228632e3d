"""Value objects passed between the protocols. All are frozen attrs classes."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import torch
from torch import Tensor

if TYPE_CHECKING:  # the protocols refer to these value types in turn
    from ddrl_framework.protocols import Policy, Sampler


def _sum_non_batch(x: Tensor) -> Tensor:
    return x.flatten(1).sum(dim=1)


@attrs.frozen(kw_only=True)
class Gaussian:
    """One isotropic Gaussian transition ``N(mean, std^2 I)`` per batch member.

    ``mean``: ``[B, ...]``; ``std``: broadcastable to ``mean`` (a scalar tensor or ``[B, 1, ...]``).
    Densities are computed in float32 and summed over all non-batch dims (docs/concepts.md, "The objective").
    """

    mean: Tensor
    std: Tensor

    @property
    def is_deterministic(self) -> bool:
        return bool((self.std == 0).all())

    def _std32(self) -> Tensor:
        return self.std.float().expand_as(self.mean)

    def log_prob(self, x: Tensor) -> Tensor:
        """``log N(x; mean, std^2 I)`` summed over non-batch dims: ``[B]``."""
        if self.is_deterministic:
            raise ValueError("a deterministic transition (std == 0) has no density; use eta > 0")
        std = self._std32()
        z = (x.float() - self.mean.float()) / std
        log_density = -0.5 * z.square() - std.log() - 0.5 * math.log(2 * math.pi)
        return _sum_non_batch(log_density)

    def kl(self, other: Gaussian) -> Tensor:
        """Exact ``KL(self || other)`` of two isotropic Gaussians, summed over non-batch dims: ``[B]``.

        With equal stds this is ``||mu_self - mu_other||^2 / (2 std^2)``.
        """
        var_p, var_q = self._std32().square(), other._std32().square()
        mean_term = (self.mean.float() - other.mean.float()).square() / (2 * var_q)
        var_term = 0.5 * (var_p / var_q - 1 - torch.log(var_p / var_q))
        return _sum_non_batch(mean_term + var_term)

    def sample(self, generator: torch.Generator | NoiseStream | None = None) -> Tensor:
        if isinstance(generator, NoiseStream):
            noise = generator.next(self.mean)
        else:
            noise = torch.randn(self.mean.shape, generator=generator, device=self.mean.device,
                                dtype=self.mean.dtype)
        return self.mean + self.std * noise


class NoiseStream:
    """Standard normal noise drawn ahead, handed out step by step: a rank's slice of the noise a
    single process would draw for the whole batch (so a run's samples do not depend on how many
    ranks share it). ``steps``: ``[K, n, ...]``."""

    def __init__(self, steps: Tensor):
        self.steps, self.index = steps, 0

    def next(self, like: Tensor) -> Tensor:
        noise = self.steps[self.index]
        if noise.shape != like.shape:
            raise ValueError(f"pre-drawn noise {tuple(noise.shape)} does not fit a step of {tuple(like.shape)}")
        self.index += 1
        return noise.to(like.dtype)


@attrs.frozen(kw_only=True)
class Trajectory:
    """A rollout of K Gaussian steps, recorded with the old policy's means and log-probs.

    ``latents``: ``[K+1, B, ...]`` (``latents[0]`` is the initial noise, ``latents[K]`` the sample);
    ``timesteps``: ``[K]``; ``means``: ``[K, B, ...]``; ``stds``: ``[K]``;
    ``log_probs``: ``[K, B]`` float32 (NaN where a step is deterministic).
    """

    latents: Tensor
    timesteps: Tensor
    means: Tensor
    stds: Tensor
    log_probs: Tensor

    @property
    def num_steps(self) -> int:
        return int(self.timesteps.shape[0])

    @property
    def final(self) -> Tensor:
        return self.latents[-1]

    @property
    def initial_noise(self) -> Tensor:
        return self.latents[0]


@attrs.frozen(kw_only=True)
class DataBatch:
    """Prompts or class labels, and where the source has them, the paired data ``x0``.

    ``prompts``: ``B`` strings (may be empty strings for unconditional data);
    ``labels``: ``[B]`` long or None; ``x0``: pixels in [0, 1], ``[B, C, H, W]`` (or
    ``[B, C, T, H, W]``), or None. A policy's ``encode`` turns them into its latents.
    """

    prompts: tuple[str, ...]
    labels: Tensor | None = None
    x0: Tensor | None = None

    def __len__(self) -> int:
        return len(self.prompts)

    def repeat_each(self, times: int) -> DataBatch:
        """Each member ``times`` times in a row: the layout of a batch of groups."""
        return DataBatch(
            prompts=tuple(p for p in self.prompts for _ in range(times)),
            labels=None if self.labels is None else self.labels.repeat_interleave(times, dim=0),
            x0=None if self.x0 is None else self.x0.repeat_interleave(times, dim=0),
        )

    def to(self, device: torch.device | str) -> DataBatch:
        return attrs.evolve(
            self,
            labels=None if self.labels is None else self.labels.to(device),
            x0=None if self.x0 is None else self.x0.to(device),
        )


def take(batch: DataBatch, stop: int, start: int = 0) -> DataBatch:
    """Members ``start`` to ``stop`` of ``batch`` (the first ``stop`` by default)."""
    return DataBatch(
        prompts=batch.prompts[start:stop],
        labels=None if batch.labels is None else batch.labels[start:stop],
        x0=None if batch.x0 is None else batch.x0[start:stop],
    )


@attrs.frozen(kw_only=True)
class ExtraStates:
    """States at a trained step that a regularizer needs the policy's transition at (its optional
    ``extra_states``): the trainer runs them through the same network call as the step's rollout
    states and passes the result back as ``StepContext.extra_transition``.

    ``latents`` ``[N, ...]``; ``cond`` their conditions (as ``policy.encode_conditions`` gives
    them); ``x0`` what the regularizer wants back in ``loss`` (e.g. the clean data), untouched."""

    latents: Tensor
    cond: Any
    x0: Tensor | None = None


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


