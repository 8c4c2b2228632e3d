"""Metric ``held-out-reward``: any registered reward model, scored on the evaluation samples
(the held-out prompts, from fixed noise) as a metric; it is never trained on.

::

    [[metrics]]
    name = "held-out-reward"
    reward = { name = "aesthetic", head = "weights/aesthetic.pth" }   # a [[rewards]] table
    key = "aesthetic"          # reported as heldout_aesthetic (default: the reward's name)

A comparison then shows when the trained reward rose while another judge fell. The reward table
is checked against the registry with the rest of the experiment, before any work; the model is
built with the metric, before training.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import torch

from ddrl_framework.contexts import EvalContext
from ddrl_framework.errors import UserError
from ddrl_framework.hookspecs import hookimpl
from ddrl_framework.metric_key import MetricKey
from ddrl_framework.registry import Registry, load_registry


@hookimpl
def register_metrics(register):
    register("held-out-reward", HeldOutReward)


_REGISTRY: list[Registry] = []


def registry() -> Registry:
    """The installed plugins' registry, loaded once."""
    if not _REGISTRY:
        _REGISTRY.append(load_registry())
    return _REGISTRY[0]


def _split(table: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    if not isinstance(table, Mapping) or not isinstance(table.get("name"), str):
        raise ValueError(f"expected a reward table with a 'name' (a registered reward model), got {table!r}")
    options = {k: v for k, v in table.items() if k not in ("name", "weight")}
    return table["name"], options


def _check_reward(_: Any, attribute: attrs.Attribute, table: Mapping[str, Any]) -> None:
    name, options = _split(table)
    try:
        registry().check("reward", name, options, "reward")
    except UserError as error:
        raise ValueError(str(error)) from None


def reported_key(key: str | None, reward: Mapping[str, Any]) -> str:
    """``heldout_<key>``, the key defaulting to the reward's name (``-`` becomes ``_``)."""
    return "heldout_" + (key or reward.get("name", "reward")).replace("-", "_")


@attrs.frozen(kw_only=True)
class HeldOutReward:
    reward: dict[str, Any] = attrs.field(validator=_check_reward)  # a [[rewards]] table: name + options
    key: str | None = None  # reported as heldout_<key>; default: the reward's name
    needs_reference = False
    _model: list[Any] = attrs.field(factory=list, init=False, repr=False, eq=False)

    @property
    def metric_key(self) -> str:
        return reported_key(self.key, self.reward)

    @classmethod
    def metric_keys(cls, options: Mapping[str, Any]) -> Sequence[MetricKey]:
        """The held-out reward: higher is better, its scale the reward's (no default margin)."""
        key = reported_key(options.get("key"), options.get("reward") or {})
        return [MetricKey(key, "higher"), MetricKey(key + "_std", None, 0.0)]

    def __attrs_post_init__(self) -> None:
        name, options = _split(self.reward)  # built with the metric: a missing file stops before training
        self._model.append(registry().build("reward", name, options, f"held-out-reward: reward '{name}'"))

    def model(self) -> Any:
        return self._model[0]

    @torch.no_grad()
    def __call__(self, context: EvalContext) -> dict[str, float]:
        values = self.model()(context.samples, context.prompts, {})
        if not isinstance(values, torch.Tensor) or values.shape != (context.samples.shape[0],):
            raise ValueError(f"reward '{self.reward['name']}' returned {values!r}; expected one float per sample")
        return {self.metric_key: float(values.float().mean()), self.metric_key + "_std":
                float(values.float().std(unbiased=False))}
