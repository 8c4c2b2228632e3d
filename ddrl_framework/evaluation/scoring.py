"""The experiment's rewards: each model's values, their weighted sum, and a model that raises named."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
from torch import Tensor

from ddrl_framework.errors import TrainingError, UserError
from ddrl_framework.protocols import RewardModel


@attrs.frozen(kw_only=True)
class WeightedReward:
    key: str  # metric key suffix, e.g. "jpeg_compressibility"
    name: str
    weight: float
    model: RewardModel


def score_each(
    rewards: Sequence[WeightedReward], pixels: Tensor, prompts: Sequence[str], metadata: Mapping[str, Any],
) -> dict[str, Tensor]:
    """Each reward model's (unweighted) values ``[B]``, by key; a failing model is named."""
    values = {}
    for reward in rewards:
        try:
            out = reward.model(pixels, prompts, metadata).to(pixels.device).float()
        except UserError:
            raise
        except Exception as error:
            raise TrainingError(f"reward model '{reward.name}' raised {type(error).__name__}: {error}") from error
        if out.shape != (pixels.shape[0],):
            raise ValueError(f"reward model '{reward.name}' returned shape {tuple(out.shape)}; "
                             f"expected [{pixels.shape[0]}]")
        values[reward.key] = out
    return values


def weighted_total(rewards: Sequence[WeightedReward], values: Mapping[str, Tensor]) -> Tensor:
    return sum(reward.weight * values[reward.key] for reward in rewards)


def score(
    rewards: Sequence[WeightedReward], pixels: Tensor, prompts: Sequence[str],
    metadata: Mapping[str, Any],
) -> tuple[Tensor, dict[str, float]]:
    """The weighted sum of every reward ``[B]``, and each reward's mean for the metrics."""
    values = score_each(rewards, pixels, prompts, metadata)
    means = {f"reward_{key}": value.mean().item() for key, value in values.items()}
    return weighted_total(rewards, values), means
