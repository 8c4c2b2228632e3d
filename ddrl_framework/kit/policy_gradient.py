"""Group advantages and the clipped policy loss (docs/concepts.md, "The objective")."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def group_advantages(
    rewards: Tensor,
    group_size: int,
    normalization: str = "group-std",
    clip: float = 5.0,
    transform: str = "none",
    eps: float = 1e-4,
    temperature: float = 1.0,
    log_normalizer: float | None = None,
) -> Tensor:
    """Advantages ``[B]`` from rewards ``[B]`` laid out as consecutive groups of ``group_size``.

    ``group-std``: ``(r - mean_group) / (std_group + eps)`` (GRPO); ``raw``: ``r_i`` minus the
    mean of the *other* members of its group (leave-one-out), ``S / (S - 1) (r - mean_group)``:
    the baseline does not depend on the sample, so the gradient is that of ``E[r]`` itself and
    beta keeps its meaning (``r - mean_group`` would scale the reward by ``(S - 1) / S``, an
    effective beta ``S / (S - 1)`` times the stated one). ``transform = "neg-exp"``: then ``A <- -exp(-A)``
    (DDRL's monotone transform). Last, the clip to ``[-clip, clip]``: after the transform, in the
    official implementation's order (exponentiate, then clamp).

    ``transform = "exp-tilt"`` is the DDRL paper's form from raw rewards instead:
    ``A = -exp(-(r - Z) / T)``, then the clip. ``Z = T log E exp(r / T)`` is ``log_normalizer``
    when given (a constant for the run, estimated under the reference: the paper's Z; then, with
    the data regularizer at weight 1 in nats, the optimum is ``p_data exp(r / T)``), else the
    group's own ``T log mean_group exp(r / T)`` (the target then sharpens as the policy improves).
    """
    if rewards.ndim != 1 or rewards.shape[0] % group_size:
        raise ValueError(f"rewards {tuple(rewards.shape)} do not split into groups of {group_size}")
    grouped = rewards.float().reshape(-1, group_size)
    if transform == "exp-tilt":
        advantages = exp_tilt(grouped, temperature, log_normalizer)
    else:
        advantages = _normalized(grouped, normalization, eps)
        if transform == "neg-exp":
            advantages = -torch.exp(-advantages)
        elif transform != "none":
            raise ValueError(f"unknown advantage transform '{transform}'")
    return advantages.clamp(-clip, clip).reshape(-1)


def _normalized(grouped: Tensor, normalization: str, eps: float) -> Tensor:
    centered = grouped - grouped.mean(dim=1, keepdim=True)
    if normalization == "group-std":
        return centered / (grouped.std(dim=1, unbiased=False, keepdim=True) + eps)
    if normalization != "raw":
        raise ValueError(f"unknown advantage normalization '{normalization}'")
    size = grouped.shape[1]
    return centered * (size / (size - 1)) if size > 1 else centered


def exp_tilt(grouped: Tensor, temperature: float, log_normalizer: float | None = None) -> Tensor:
    """``-exp(-(r - Z) / T)`` for rewards ``[G, S]``; ``Z`` the given constant, or per group."""
    scaled = grouped / temperature
    if log_normalizer is None:
        z = torch.logsumexp(scaled, dim=1, keepdim=True) - math.log(grouped.shape[1])
    else:
        z = log_normalizer / temperature
    return -torch.exp(-(scaled - z))


def tilt_log_normalizer(rewards: Tensor, temperature: float) -> float:
    """``Z = T log mean exp(r / T)`` of rewards ``[N]`` (e.g. the reference's own samples)."""
    scaled = rewards.double().flatten() / temperature
    return float(temperature * (torch.logsumexp(scaled, dim=0) - math.log(scaled.numel())))


def clipped_policy_loss(
    log_prob: Tensor, old_log_prob: Tensor, advantages: Tensor, clip_range: float
) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO's clipped surrogate, ``mean(max(-A r, -A clip(r, 1 - eps, 1 + eps)))``, and statistics.

    All inputs ``[B]``; ``r = exp(log_prob - old_log_prob)``.
    """
    ratio = torch.exp(log_prob - old_log_prob)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1 - clip_range, 1 + clip_range)
    loss = torch.maximum(unclipped, clipped).mean()
    with torch.no_grad():
        stats = {
            "ratio_mean": ratio.mean(),
            "clip_fraction": ((ratio - 1).abs() > clip_range).float().mean(),
            "approx_kl": 0.5 * (log_prob - old_log_prob).square().mean(),
        }
    return loss, stats
