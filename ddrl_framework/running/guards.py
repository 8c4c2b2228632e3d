"""Plugins held to their contract while a run goes: a regularizer or a metric that raises, or
returns something other than its protocol says, stops the run with a :class:`TrainingError`
(exit code 3) naming the component, its plugin and distribution, and what was expected. It stops
before that update is applied, so the weights and every checkpoint are as they were. (Rewards
are checked where they are scored: ``evaluation.scoring``.) What each output must be is checked
by ``kit.role_outputs``, the same functions ``ddrl doctor`` and the contract suites call.

A non-finite loss is not a contract breach here: ``train.on_nonfinite`` decides (stop or skip).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ddrl_framework.errors import TrainingError, UserError
from ddrl_framework.kit.role_outputs import check_metric_output, check_regularizer_losses

STOPPED = "the run stopped there; the checkpoints already written are intact"


def _call(component: str, method: str, function: Callable[[Any], Any], context: Any) -> Any:
    try:
        return function(context)
    except (UserError, TrainingError):
        raise
    except Exception as error:
        raise TrainingError(f"{component} raised in {method}: {type(error).__name__}: {error}; "
                            f"{STOPPED}") from error


def check_losses(losses: Any, component: str, method: str) -> dict[str, Tensor]:
    """``losses`` is what the Regularizer protocol says (``kit.role_outputs``), each carrying a
    gradient where it is not zero."""
    try:
        check_regularizer_losses(losses, f"{component}: {method}")
    except ValueError as error:
        raise TrainingError(f"{error}; {STOPPED}") from None
    for key, value in losses.items():
        if torch.is_grad_enabled() and not value.requires_grad and float(value.detach()) != 0:
            raise TrainingError(
                f"{component}: {method}['{key}'] = {float(value.detach()):.4g} carries no gradient, so "
                "it cannot regularize anything: is it .detach()ed, a constant, or built from detached "
                f"tensors (e.g. context.transition.mean.detach())? Its contract suite says the same; {STOPPED}")
    return losses


class CheckedRegularizer:
    """A regularizer whose ``loss`` (and ``update_loss``, when it has one) is checked on every call.
    Every other attribute (``name``, ``beta``, ...) is the plugin's own."""

    def __init__(self, regularizer: Any, component: str):
        self.regularizer, self.component = regularizer, component
        self.name = regularizer.name
        self.needs_reference = regularizer.needs_reference
        self.needs_reference_transition = regularizer.needs_reference_transition
        self.needs_data = regularizer.needs_data

    def loss(self, context: Any) -> dict[str, Tensor]:
        losses = _call(self.component, "loss()", self.regularizer.loss, context)
        return check_losses(losses, self.component, "loss()")

    def __getattr__(self, attribute: str) -> Any:
        if attribute == "regularizer":  # not set yet (a copy in the making)
            raise AttributeError(attribute)
        value = getattr(self.regularizer, attribute)
        if attribute != "update_loss" or value is None:  # None: no update_loss, as the protocol allows
            return value
        return lambda context: check_losses(_call(self.component, "update_loss()", value, context),
                                            self.component, "update_loss()")


class CheckedMetric:
    """A metric whose every evaluation is checked: named finite floats."""

    def __init__(self, metric: Any, component: str):
        self.metric, self.component = metric, component
        self.needs_reference = metric.needs_reference

    def __call__(self, context: Any) -> dict[str, float]:
        values = _call(self.component, "its evaluation", self.metric, context)
        try:
            check_metric_output(values, self.component)
        except ValueError as error:
            raise TrainingError(f"{error}; {STOPPED}") from None
        return values

    def __getattr__(self, attribute: str) -> Any:
        if attribute == "metric":
            raise AttributeError(attribute)
        return getattr(self.metric, attribute)
