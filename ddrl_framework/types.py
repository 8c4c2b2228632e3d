"""Value objects passed between the protocols. All are frozen attrs classes."""

from __future__ import annotations

import math
from typing import Any

import attrs
import torch
from torch import Tensor


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

    def sample(self, generator: NoiseSource = None) -> Tensor:
        return self.mean + self.std * standard_normal(self.mean, generator)


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


NoiseSource = torch.Generator | NoiseStream | None
"""Where a sampler's ``rollout`` draws its step noise: a ``torch.Generator`` (one process), a
``NoiseStream`` (under torchrun: this rank's slice of the noise drawn ahead), or None (torch's
global generator). Draw from it with :func:`standard_normal` or ``Gaussian.sample``; a
``NoiseStream`` is no ``torch.Generator``, so ``torch.randn(..., generator=...)`` fails on it."""


def standard_normal(like: Tensor, source: NoiseSource) -> Tensor:
    """Standard normal noise with the shape, device and dtype of ``like``, drawn from ``source``."""
    if isinstance(source, NoiseStream):
        return source.next(like)
    return torch.randn(like.shape, generator=source, device=like.device, dtype=like.dtype)


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
