"""Metrics ``frechet-distance``, ``diversity`` and ``drift`` (features: the digits CNN).

* ``frechet-distance``: FD between the evaluation samples and the held-out data in the feature
  space; with ``weighting`` the held-out data are reweighted to a target ``p_data(x) w(x)``:
  ``exp-tilt`` (``w = exp(r / T)``) or ``forward-kl`` (``w = T / (lambda - r)``), ``r`` the
  experiment's reward on each held-out image; with ``digit`` only the held-out images of that
  digit (e.g. the FD to held-out 3s of a reference that never saw a 3).
* ``diversity``: mean pairwise feature distance, entropy of the predicted classes, the fraction
  predicted as each digit (``class_0`` .. ``class_9``).
* ``recognizable`` and ``hack-rate``: see :mod:`ddrl_plugins.metrics.recognizable`.
* ``drift``: the mean per-step KL of the policy's transitions from the reference's, along the
  evaluation trajectories.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import attrs
import torch

from ddrl_framework.contexts import EvalContext
from ddrl_framework.evaluation.frechet import (
    frechet_distance,
    target_weights,
    weighted_moments,
)
from ddrl_framework.hookspecs import hookimpl
from ddrl_framework.metric_key import FRACTION, NON_NEGATIVE, MetricKey
from ddrl_plugins.metrics.recognizable import HackRate, Recognizable
from ddrl_plugins.shared.digits_classifier import digits_classifier


@hookimpl
def register_metrics(register):
    register("frechet-distance", FrechetDistance)
    register("diversity", Diversity)
    register("drift", Drift)
    register("recognizable", Recognizable)  # plugins/metrics/recognizable.py
    register("hack-rate", HackRate)


def held_out_weights(context: EvalContext, weighting: str, temperature: float,
                     images: torch.Tensor, prompts) -> torch.Tensor | None:
    if weighting == "none":
        return None
    return target_weights(weighting, context.score(images, prompts), temperature)


def held_out_of(context: EvalContext, digit: int | None) -> tuple[torch.Tensor, tuple[str, ...]]:
    """The held-out images and prompts, only those labelled ``digit`` unless it is None."""
    held = context.held_out
    if digit is None:
        return held.x0, held.prompts
    if held.labels is None:
        raise ValueError("frechet-distance: digit is set but the data source's held-out images have no labels")
    keep = (held.labels == digit).nonzero().flatten().tolist()
    if len(keep) < 2:
        raise ValueError(f"frechet-distance: digit = {digit}, but the held-out data has {len(keep)} of them "
                         "(is it one of the data source's classes?)")
    return held.x0[keep], tuple(held.prompts[i] for i in keep)


@attrs.frozen(kw_only=True)
class FrechetDistance:
    weighting: Literal["none", "exp-tilt", "forward-kl"] = "none"
    temperature: float = attrs.field(default=1.0, validator=attrs.validators.gt(0.0))
    key: str = "fd"  # the name it is reported under
    digit: int | None = attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.in_(range(10))))
    needs_reference = False

    @classmethod
    def metric_keys(cls, options: Mapping[str, Any]) -> Sequence[MetricKey]:
        """Lower is better. The FD to all the held-out data (no ``weighting``, no ``digit``) is the
        experiment's fidelity, with a default margin; a reweighted or one-digit FD has its own scale."""
        whole = options.get("weighting", "none") == "none" and options.get("digit") is None
        key = options.get("key", "fd")
        if not whole:
            return [MetricKey(key, "lower", *NON_NEGATIVE)]
        return [MetricKey(key, "lower", *NON_NEGATIVE, margin=30.0, column="FD", digits=1, fidelity=True,
                          note="about one digit class of ten lost (FD +31)")]

    @torch.no_grad()
    def __call__(self, context: EvalContext) -> dict[str, float]:
        classifier = digits_classifier()
        images, prompts = held_out_of(context, self.digit)
        generated = classifier.features(context.samples.cpu())
        real = classifier.features(images.cpu())
        weights = held_out_weights(context, self.weighting, self.temperature, images, prompts)
        fd = frechet_distance(*weighted_moments(generated), *weighted_moments(real, weights))
        return {self.key: fd}


@attrs.frozen(kw_only=True)
class Diversity:
    needs_reference = False

    @classmethod
    def metric_keys(cls, options: Mapping[str, Any]) -> Sequence[MetricKey]:
        return [MetricKey("pairwise_distance", "higher", *NON_NEGATIVE),
                MetricKey("class_entropy", "higher", *FRACTION, margin=0.05, column="class entropy", position=2,
                          note="one class of ten lost: 1 - ln 9 / ln 10 = 0.046"),
                *(MetricKey(f"class_{d}", None, *FRACTION, summarized_by="class_entropy",
                            note="ten rows would bury the rest") for d in range(10))]

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

    @classmethod
    def metric_keys(cls, options: Mapping[str, Any]) -> Sequence[MetricKey]:
        return [MetricKey("drift_kl", None, *NON_NEGATIVE, column="drift KL", position=3, digits=2,
                          note="no direction: it is not fidelity")]

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
