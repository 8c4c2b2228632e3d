"""Build an experiment's components from the registry (no ``if name == ...`` anywhere)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import torch
from torch import Tensor

from ddrl_framework.config import Experiment
from ddrl_framework.errors import TrainingError, UserError
from ddrl_framework.pretrain import policy_options
from ddrl_framework.protocols import DataSource, Metric, Policy, Regularizer, RewardModel, Sampler
from ddrl_framework.registry import Registry
from ddrl_framework.runtime import config_hash


@attrs.frozen(kw_only=True)
class WeightedReward:
    key: str  # metric key suffix, e.g. "jpeg_compressibility"
    name: str
    weight: float
    model: RewardModel


@attrs.frozen(kw_only=True)
class Components:
    policy: Policy
    sampler: Sampler
    rewards: tuple[WeightedReward, ...]
    regularizer: Regularizer
    data: DataSource
    metrics: tuple[tuple[str, Metric], ...] = ()

    @property
    def needs_reference(self) -> bool:
        return self.regularizer.needs_reference or any(m.needs_reference for _, m in self.metrics)


def _checked(component: Any, protocol: type, where: str) -> Any:
    if not isinstance(component, protocol):
        raise UserError(f"{where}: the plugin built a {type(component).__name__}, which does not "
                        f"implement the {protocol.__name__} protocol (ddrl_framework.protocols)")
    return component


def build_components(
    experiment: Experiment, registry: Registry, device: torch.device, show_progress: bool = True
) -> Components:
    """Every component of ``experiment``; pretrains the reference first when it is not cached."""
    e = experiment
    options = policy_options(e, registry, show_progress)
    policy = _checked(registry.build("policy", e.policy.name, options, "[policy]"), Policy, "[policy]")
    rewards = []
    for i, spec in enumerate(e.rewards):
        where = f"[[rewards]] #{i + 1}"
        model = _checked(registry.build("reward", spec.name, spec.options, where), RewardModel, where)
        key = spec.name.replace("-", "_")
        rewards.append(WeightedReward(key=key, name=spec.name, weight=spec.weight, model=model))
    if not rewards:
        raise UserError("the config has no [[rewards]]: add at least one, e.g. name = \"brightness\"")
    metrics = []
    for i, spec in enumerate(e.metrics):
        where = f"[[metrics]] #{i + 1}"
        metrics.append((spec.name, _checked(registry.build("metric", spec.name, spec.options, where),
                                            Metric, where)))
    policy = policy.to(device)
    sampler = _checked(registry.build("sampler", e.sampler.name, e.sampler.options, "[sampler]"),
                       Sampler, "[sampler]")
    data = _checked(registry.build("data", e.data.name, e.data.options, "[data]"), DataSource, "[data]")
    if getattr(data, "needs_policy", False):  # e.g. reference-samples: data made by the reference
        identity = config_hash({"policy": [e.policy.name, options], "sampler": [e.sampler.name, e.sampler.options]})
        data.prepare(policy, sampler, identity, show_progress)
    return Components(
        metrics=tuple(metrics), policy=policy, sampler=sampler, rewards=tuple(rewards), data=data,
        regularizer=_checked(
            registry.build("regularizer", e.regularizer.name, e.regularizer.options, "[regularizer]"),
            Regularizer, "[regularizer]"),
    )


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
