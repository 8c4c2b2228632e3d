"""Metrics ``frechet-distance``, ``diversity`` and ``drift`` (features: the digits CNN).

* ``frechet-distance``: FD between the evaluation samples and the held-out data in the feature
  space; with ``weighting`` the held-out data are reweighted to a target ``p_data(x) w(x)``:
  ``exp-tilt`` (``w = exp(r / T)``) or ``forward-kl`` (``w = T / (lambda - r)``), ``r`` the
  experiment's reward on each held-out image.
* ``diversity``: mean pairwise feature distance, entropy of the predicted classes, the fraction
  predicted as each digit (``class_0`` .. ``class_9``).
* ``recognizable`` and ``hack-rate``: see :mod:`ddrl_plugins.metrics.recognizable`.
* ``drift``: the mean per-step KL of the policy's transitions from the reference's, along the
  evaluation trajectories.
"""

from __future__ import annotations

import math
from typing import Literal

import attrs
import torch

from ddrl_framework.evaluation.frechet import (
    frechet_distance,
    target_weights,
    weighted_moments,
)
from ddrl_framework.hookspecs import hookimpl
from ddrl_framework.types import EvalContext
from ddrl_plugins.metrics.recognizable import HackRate, Recognizable
from ddrl_plugins.shared.digits_classifier import digits_classifier


@hookimpl
def register_metrics(register):
    register("frechet-distance", FrechetDistance)
    register("diversity", Diversity)
    register("drift", Drift)
    register("recognizable", Recognizable)  # plugins/metrics/recognizable.py
    register("hack-rate", HackRate)


def held_out_weights(context: EvalContext, weighting: str, temperature: float) -> torch.Tensor | None:
    if weighting == "none":
        return None
    rewards = context.score(context.held_out.x0, context.held_out.prompts)
    return target_weights(weighting, rewards, temperature)


@attrs.frozen(kw_only=True)
class FrechetDistance:
    weighting: Literal["none", "exp-tilt", "forward-kl"] = "none"
    temperature: float = attrs.field(default=1.0, validator=attrs.validators.gt(0.0))
    key: str = "fd"  # the name it is reported under
    needs_reference = False

    @torch.no_grad()
    def __call__(self, context: EvalContext) -> dict[str, float]:
        classifier = digits_classifier()
        generated = classifier.features(context.samples.cpu())
        real = classifier.features(context.held_out.x0.cpu())
        weights = held_out_weights(context, self.weighting, self.temperature)
        fd = frechet_distance(*weighted_moments(generated), *weighted_moments(real, weights))
        return {self.key: fd}


@attrs.frozen(kw_only=True)
class Diversity:
    needs_reference = False

    @torch.no_grad()
    def __call__(self, context: EvalContext) -> dict[str, float]:
        classifier = digits_classifier()
        features = classifier.features(context.samples.cpu())
        probabilities = torch.softmax(classifier.head(features), dim=1)
        fractions = torch.bincount(probabilities.argmax(1), minlength=10).double() / len(features)
        entropy = -(fractions[fractions > 0] * fractions[fractions > 0].log()).sum()
        distances = torch.pdist(features.double())
        return {"pairwise_distance": float(distances.mean()),
                "class_entropy": float(entropy) / math.log(10),
                **{f"class_{d}": float(fractions[d]) for d in range(10)}}


@attrs.frozen(kw_only=True)
class Drift:
    needs_reference = True

    @torch.no_grad()
    def __call__(self, context: EvalContext) -> dict[str, float]:
        trajectory, total = context.trajectory, 0.0
        for k in range(trajectory.num_steps):
            x_k = trajectory.latents[k]
            policy_step = context.sampler.transition(context.policy, x_k, k, context.cond)
            reference_step = context.sampler.transition(context.reference, x_k, k, context.cond)
            if not policy_step.is_deterministic:
                total += float(policy_step.kl(reference_step).mean())
        return {"drift_kl": total / trajectory.num_steps}
