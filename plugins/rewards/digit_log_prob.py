"""Reward ``digit-log-prob``: ``log q(digit | x)`` under a logistic regression fitted to the
sklearn-digits train split. It is a fixed classifier that is *not* the evaluator (the digits
metrics use a CNN), so the digits-tilt benchmark has a known optimum ``p_data(x) q(digit | x)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
from torch import Tensor

from ddrl_framework.hookspecs import hookimpl
from ddrl_plugins.shared.digits_logistic import logistic_log_probs


@hookimpl
def register_reward_models(register):
    register("digit-log-prob", DigitLogProb)


@attrs.frozen(kw_only=True)
class DigitLogProb:
    digit: int = attrs.field(default=3, validator=attrs.validators.in_(range(10)))
    regularization: float = 1.0  # sklearn's C (inverse L2 strength)

    def __call__(self, samples: Tensor, prompts: Sequence[str], metadata: Mapping[str, Any]) -> Tensor:
        """Images ``[B, 1, H, W]`` in [0, 1] (resized to 8x8) -> ``[B]`` log-probabilities."""
        return logistic_log_probs(samples, self.regularization)[:, self.digit].to(samples.device)
