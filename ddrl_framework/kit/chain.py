"""What every sampler's rollout shares: run the chain of Gaussian transitions, recording each."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ddrl_framework.types import DataBatch, NoiseSource, Trajectory, take


def require_process(policy: Any, kind: type, sampler: str, instead: str) -> Any:
    """``policy.forward_process`` if it is a ``kind``; else an error naming the sampler to use instead."""
    process = policy.forward_process
    if not isinstance(process, kind):
        raise ValueError(f"{sampler} needs a policy whose forward process is a {kind.__name__}; this "
                         f"policy's is a {type(process).__name__}: use the {instead} sampler")
    return process


def rollout_chain(sampler: Any, policy: Any, cond: Any, noise: Tensor,
                  generator: NoiseSource, timesteps: Tensor) -> Trajectory:
    """Sample ``sampler.num_steps`` transitions from ``noise`` (call under ``torch.no_grad``).

    A deterministic step (std 0) is taken at its mean and gets a NaN log-prob.
    """
    latents, means, stds, log_probs = [noise], [], [], []
    for k in range(sampler.num_steps):
        step = sampler.transition(policy, latents[-1], k, cond)
        x_next = step.sample(generator).to(noise.dtype)
        latents.append(x_next)
        means.append(step.mean)
        stds.append(step.std)
        log_probs.append(
            torch.full((noise.shape[0],), float("nan"), device=noise.device)
            if step.is_deterministic else step.log_prob(x_next)
        )
    return Trajectory(latents=torch.stack(latents), timesteps=timesteps, means=torch.stack(means),
                      stds=torch.stack(stds), log_probs=torch.stack(log_probs))


def concat_trajectories(parts: Sequence[Trajectory]) -> Trajectory:
    """Trajectories of consecutive batch chunks as one (batch is dim 1 of the stacked fields)."""
    if len(parts) == 1:
        return parts[0]
    return Trajectory(
        latents=torch.cat([p.latents for p in parts], dim=1), timesteps=parts[0].timesteps,
        means=torch.cat([p.means for p in parts], dim=1), stds=parts[0].stds,
        log_probs=torch.cat([p.log_probs for p in parts], dim=1))


@torch.no_grad()
def sample_in_chunks(sampler: Any, policy: Any, conditions: DataBatch, noise: Tensor,
                     generator: torch.Generator | None, chunk: int) -> tuple[Trajectory, Tensor]:
    """Roll out ``noise`` ``[N, ...]`` under ``conditions`` ``chunk`` samples at a time (0: all at
    once) and decode; returns the joined trajectory and the pixels."""
    size = chunk if chunk > 0 else len(noise)
    trajectories, pixels = [], []
    for start in range(0, len(noise), size):
        part = take(conditions, start + size, start)
        trajectory = sampler.rollout(policy, policy.encode_conditions(part), noise[start : start + size], generator)
        trajectories.append(trajectory)
        pixels.append(policy.decode(trajectory.final))
    return concat_trajectories(trajectories), torch.cat(pixels)


GAIN_LIMIT = 10.0  # a step is left out of a sampler's default trained steps above this times the median gain


def steps_within_gain(gains: Tensor, limit: float = GAIN_LIMIT) -> list[int]:
    """The steps whose gradient gain ``|d mean / d output| / std`` (``[K]``, inf for a deterministic
    step) is finite and at most ``limit`` times the median of the finite ones: a sampler's default
    trained steps. A step far above the median (a near-deterministic last step, a first step whose
    x0 is ``1 / sqrt(a_t)`` times the network output) would carry most of the policy gradient, and
    that gradient is mostly noise (``benchmarks/step_gradients.py`` measures the shares)."""
    finite = gains[torch.isfinite(gains)]
    if finite.numel() == 0:
        return []
    bound = limit * finite.median()
    return [k for k, gain in enumerate(gains.tolist()) if gain <= bound]
