"""The experiment's rewards: each model's values, their weighted sum, and a model that breaks its
contract (raises, or returns anything but one float per sample) named with its plugin: the run
stops with a TrainingError (exit code 3), its checkpoints intact."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
from torch import Tensor

from ddrl_framework.errors import TrainingError, UserError
from ddrl_framework.kit.role_outputs import check_reward_output
from ddrl_framework.protocols import RewardModel


@attrs.frozen(kw_only=True)
class WeightedReward:
    key: str  # metric key suffix, e.g. "jpeg_compressibility"
    name: str
    weight: float
    model: RewardModel
    origin: str = ""  # the plugin and distribution, e.g. "plugin 'ink' (ddrl-ink 0.1.0)"

    @property
    def component(self) -> str:
        return f"reward model '{self.name}'" + (f" of {self.origin}" if self.origin else "")


def score_each(
    rewards: Sequence[WeightedReward], pixels: Tensor, prompts: Sequence[str], metadata: Mapping[str, Any],
) -> dict[str, Tensor]:
    """Each reward model's (unweighted) values ``[B]``, by key; a model that raises or returns
    anything else stops the run (:class:`TrainingError`), named with its plugin."""
    return {reward.key: _score_one(reward, pixels, prompts, metadata) for reward in rewards}


def _score_one(reward: WeightedReward, pixels: Tensor, prompts: Sequence[str],
               metadata: Mapping[str, Any]) -> Tensor:
    stopped = "the run stopped there; the checkpoints already written are intact"
    try:
        out = reward.model(pixels, prompts, metadata)
    except (UserError, TrainingError):
        raise
    except Exception as error:
        raise TrainingError(f"{reward.component} raised {type(error).__name__}: {error}; {stopped}") from error
    try:
        check_reward_output(out, pixels.shape[0], reward.component)
    except ValueError as error:
        raise TrainingError(f"{error}, on samples {list(pixels.shape)}; {stopped}") from None
    return out.to(pixels.device).float()


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
