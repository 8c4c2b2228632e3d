"""Reward ``digit-log-prob``: ``log q(digit | x)`` under a logistic regression fitted to the
sklearn-digits train split. It is a fixed classifier that is *not* the evaluator (the digits
metrics use a CNN), so the digits-tilt benchmark has a known optimum ``p_data(x) q(digit | x)``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor

from ddrl_framework.hookspecs import hookimpl
from ddrl_plugins.shared.digits import split_digits


@hookimpl
def register_reward_models(register):
    register("digit-log-prob", DigitLogProb)


@functools.lru_cache(maxsize=4)
def _fit(regularization: float) -> tuple[Tensor, Tensor]:
    """Weights ``[10, 64]`` and biases ``[10]`` of a multinomial logistic regression."""
    from sklearn.linear_model import LogisticRegression

    split = split_digits()
    pixels = split.images[split.train].flatten(1).numpy()
    model = LogisticRegression(C=regularization, max_iter=2000).fit(pixels, split.labels[split.train].numpy())
    return torch.tensor(model.coef_, dtype=torch.float32), torch.tensor(model.intercept_, dtype=torch.float32)


@attrs.frozen(kw_only=True)
class DigitLogProb:
    digit: int = attrs.field(default=3, validator=attrs.validators.in_(range(10)))
    regularization: float = 1.0  # sklearn's C (inverse L2 strength)

    def __call__(self, samples: Tensor, prompts: Sequence[str], metadata: Mapping[str, Any]) -> Tensor:
        """Images ``[B, 1, H, W]`` in [0, 1] (resized to 8x8) -> ``[B]`` log-probabilities."""
        weights, bias = _fit(self.regularization)
        x = samples.float().cpu()
        if x.shape[-2:] != (8, 8):
            x = F.interpolate(x, size=(8, 8), mode="bilinear", align_corners=False, antialias=True)
        logits = x.flatten(1) @ weights.T + bias
        return torch.log_softmax(logits, dim=1)[:, self.digit].to(samples.device)
