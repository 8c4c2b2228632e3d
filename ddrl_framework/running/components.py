"""Build an experiment's components from the registry (no ``if name == ...`` anywhere).

The rewards carry their plugin's name for messages, and the regularizer and metrics are wrapped
so that a contract broken at run time stops the run naming the plugin (``running.guards``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import torch

from ddrl_framework.errors import UserError
from ddrl_framework.evaluation.evaluator import Evaluator
from ddrl_framework.evaluation.scoring import WeightedReward
from ddrl_framework.kit.cache import config_hash
from ddrl_framework.options import key_error
from ddrl_framework.protocols import DataSource, Metric, Policy, Regularizer, Sampler
from ddrl_framework.registry import Registry
from ddrl_framework.roles import ROLES
from ddrl_framework.running.config import Component, Experiment, RewardSpec, TrainConfig
from ddrl_framework.running.guards import CheckedMetric, CheckedRegularizer
from ddrl_framework.running.pretrain import policy_options


@attrs.frozen(kw_only=True)
class Components:
    policy: Policy
    sampler: Sampler
    rewards: tuple[WeightedReward, ...]
    regularizer: Regularizer
    data: DataSource
    metrics: tuple[tuple[str, Metric], ...] = ()
    eval_data: DataSource | None = None  # [eval_data], when the evaluation's held-out data is not [data]'s

    def held_out(self):
        """The held-out data that evaluations compare with: ``[eval_data]``'s, else ``[data]``'s."""
        return (self.eval_data or self.data).held_out()

    @property
    def needs_reference(self) -> bool:
        regularizer = self.regularizer
        return (regularizer.needs_reference or regularizer.needs_reference_transition
                or any(m.needs_reference for _, m in self.metrics))


def build_checked(registry: Registry, role: str, name: str, options: Mapping[str, Any], where: str) -> Any:
    """The component built from its options, refused unless it implements its role's protocol."""
    component = registry.build(role, name, options, where)
    protocol = ROLES[role].protocol_class()
    if not isinstance(component, protocol):
        raise UserError(key_error(where, f"the plugin built a {type(component).__name__}, which does not "
                                         f"implement the {protocol.__name__} protocol (ddrl_framework.protocols)"))
    return component


def _build(registry: Registry, role: str, spec: Component | RewardSpec, index: int = 0) -> Any:
    """The component of the ``index``-th table of ``role`` (``[policy]``, ``[[rewards]] #2``)."""
    return build_checked(registry, role, spec.name, spec.options, ROLES[role].where(index))


def _check_forward_process(policy: Policy, registry: Registry, name: str) -> None:
    """A policy built with the forward process its plugin declared (what the checks before any
    work relied on)."""
    declared, built = registry.get("policy", name).forward_process, getattr(policy.forward_process, "kind", None)
    if declared is not None and built is not None and declared != built:
        entry = registry.get("policy", name)
        raise UserError(f"[policy]: {entry.component} declares a '{declared}' forward process but built a "
                        f"'{built}' one: fix the forward_process= of its register() call")


def build_components(
    experiment: Experiment, registry: Registry, device: torch.device, show_progress: bool = True
) -> Components:
    """Every component of ``experiment`` (its pretrained reference must be cached already:
    ``pretrain.pretrain_if_needed``)."""
    e = experiment
    options = policy_options(e)
    policy = build_checked(registry, "policy", e.policy.name, options, ROLES["policy"].where())
    _check_forward_process(policy, registry, e.policy.name)
    rewards = []
    for i, spec in enumerate(e.rewards):
        model = _build(registry, "reward", spec, i)
        key = spec.name.replace("-", "_")
        rewards.append(WeightedReward(key=key, name=spec.name, weight=spec.weight, model=model,
                                      origin=registry.get("reward", spec.name).origin))
    metrics = []
    for i, spec in enumerate(e.metrics):
        metric = _build(registry, "metric", spec, i)
        metrics.append((spec.name, CheckedMetric(metric, registry.get("metric", spec.name).component)))
    policy = policy.to(device)
    sampler = _build(registry, "sampler", e.sampler)
    data = _build(registry, "data", e.data)
    if getattr(data, "needs_policy", False):  # e.g. reference-samples: data made by the reference
        identity = config_hash({"policy": [e.policy.name, options], "sampler": [e.sampler.name, e.sampler.options]})
        data.prepare(policy, sampler, identity, show_progress)
    eval_data = None if e.eval_data is None else build_checked(
        registry, "data", e.eval_data.name, e.eval_data.options, "[eval_data]")
    regularizer = _build(registry, "regularizer", e.regularizer)
    return Components(
        metrics=tuple(metrics), policy=policy, sampler=sampler, rewards=tuple(rewards), data=data, eval_data=eval_data,
        regularizer=CheckedRegularizer(regularizer, registry.get("regularizer", e.regularizer.name).component),
    )


def make_evaluator(parts: Components, reference: Policy | None, train: TrainConfig,
                   device: torch.device) -> Evaluator:
    """The evaluator of an experiment: ``train.eval_samples`` from ``train.eval_seed``'s noise."""
    return Evaluator(policy=parts.policy, sampler=parts.sampler, rewards=parts.rewards,
                     held_out=parts.held_out(), metrics=parts.metrics, reference=reference,
                     count=train.eval_samples, seed=train.eval_seed, device=device,
                     chunk=train.eval_batch_size, per_prompt=train.eval_samples_per_prompt)
