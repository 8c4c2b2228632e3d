"""Group advantages and the clipped policy loss (DESIGN.md section 2)."""

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
) -> Tensor:
    """Advantages ``[B]`` from rewards ``[B]`` laid out as consecutive groups of ``group_size``.

    ``group-std``: ``(r - mean_group) / (std_group + eps)`` (GRPO); ``raw``: ``r - mean_group``
    (beta keeps its meaning in the objective). Then ``clip`` to ``[-clip, clip]``, and with
    ``transform = "neg-exp"`` the transform ``A <- -exp(-A)``.

    ``transform = "exp-tilt"`` replaces all of that with the DDRL paper's form from raw rewards:
    ``A = -exp(-(r - Z) / T)``, ``Z = T log mean_group exp(r / T)``, the exponent clipped to
    ``[-clip, clip]``. With the data regularizer at weight 1 it targets ``p_data exp(r / T)``.
    """
    if rewards.ndim != 1 or rewards.shape[0] % group_size:
        raise ValueError(f"rewards {tuple(rewards.shape)} do not split into groups of {group_size}")
    grouped = rewards.float().reshape(-1, group_size)
    if transform == "exp-tilt":
        return _exp_tilt(grouped, temperature, clip).reshape(-1)
    centered = grouped - grouped.mean(dim=1, keepdim=True)
    if normalization == "group-std":
        centered = centered / (grouped.std(dim=1, unbiased=False, keepdim=True) + eps)
    elif normalization != "raw":
        raise ValueError(f"unknown advantage normalization '{normalization}'")
    advantages = centered.clamp(-clip, clip).reshape(-1)
    if transform == "neg-exp":
        advantages = -torch.exp(-advantages)
    elif transform != "none":
        raise ValueError(f"unknown advantage transform '{transform}'")
    return advantages


def _exp_tilt(grouped: Tensor, temperature: float, clip: float) -> Tensor:
    scaled = grouped / temperature
    log_mean_exp = torch.logsumexp(scaled, dim=1, keepdim=True) - math.log(grouped.shape[1])
    return -torch.exp(-(scaled - log_mean_exp).clamp(-clip, clip))


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
