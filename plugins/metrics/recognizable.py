"""Metrics that stay meaningful far from the data (issue 12, item 3), by the digits CNN of the
other digits metrics (trained on the train split; no reward uses it).

* ``recognizable``: the fraction of samples the CNN recognizes as a digit: its top class has
  probability >= ``confidence`` *and* the sample's features lie as close to that class's
  centroid (over the train split) as the ``quantile`` of the train digits of that class do.
  Confidence alone is fooled (a white canvas gets a confident 9 from some classifiers); the
  feature check refuses what is unlike every digit. On the held-out digits it is about 0.96, on
  white or grey canvases 0, on uniform noise about 0.18 (tests/test_recognizable.py).
* ``hack-rate``: the fraction of samples that the ``digit-log-prob`` reward's logistic
  regression calls ``digit`` (its top class) while the CNN does not recognize them as that
  digit (by the test above); also reported: ``reward_class_rate``, the fraction the logistic
  regression calls ``digit``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import torch
from torch import Tensor

from ddrl_framework.contexts import EvalContext
from ddrl_framework.metric_key import FRACTION, MetricKey
from ddrl_framework.options import bounded
from ddrl_plugins.shared.digits import split_digits
from ddrl_plugins.shared.digits_classifier import digits_classifier
from ddrl_plugins.shared.digits_logistic import logistic_log_probs


@functools.lru_cache(maxsize=4)
def class_radii(quantile: float) -> tuple[Tensor, Tensor]:
    """Each class's feature centroid ``[10, 128]`` and radius ``[10]`` (the ``quantile`` of its
    train digits' distances to it), classes as the CNN predicts them."""
    classifier, split = digits_classifier(), split_digits()
    with torch.no_grad():
        features = classifier.features(split.images[split.train])
        predicted = classifier.head(features).argmax(1)
    centroids = torch.stack([features[predicted == k].mean(0) for k in range(10)])
    distances = (features - centroids[predicted]).norm(dim=1)
    radii = torch.stack([distances[predicted == k].quantile(quantile) for k in range(10)])
    return centroids, radii


@torch.no_grad()
def recognized(samples: Tensor, confidence: float, quantile: float) -> tuple[Tensor, Tensor]:
    """Per sample ``[N]``: whether the CNN recognizes it as a digit, and which class it says."""
    classifier = digits_classifier()
    features = classifier.features(samples.cpu())
    probabilities = torch.softmax(classifier.head(features), dim=1)
    top, predicted = probabilities.max(1)
    centroids, radii = class_radii(quantile)
    typical = (features - centroids[predicted]).norm(dim=1) <= radii[predicted]
    return (top >= confidence) & typical, predicted


@attrs.frozen(kw_only=True)
class Recognizable:
    confidence: float = attrs.field(default=0.9, validator=bounded(above=0, at_most=1))  # the CNN's top-class probability
    quantile: float = attrs.field(default=0.99, validator=bounded(above=0, at_most=1))  # of the train digits' distances
    needs_reference = False

    @classmethod
    def metric_keys(cls, options: Mapping[str, Any]) -> Sequence[MetricKey]:
        return [MetricKey("recognizable", "higher", *FRACTION, margin=0.05, column="recognizable", position=1,
                          note="one sample in twenty")]

    def __call__(self, context: EvalContext) -> dict[str, float]:
        ok, _ = recognized(context.samples, self.confidence, self.quantile)
        return {"recognizable": float(ok.double().mean())}


@attrs.frozen(kw_only=True)
class HackRate:
    digit: int = attrs.field(default=3, validator=attrs.validators.in_(range(10)))
    regularization: float = 1.0  # the reward's sklearn C, as in digit-log-prob
    confidence: float = attrs.field(default=0.9, validator=bounded(above=0, at_most=1))
    quantile: float = attrs.field(default=0.99, validator=bounded(above=0, at_most=1))
    needs_reference = False

    @classmethod
    def metric_keys(cls, options: Mapping[str, Any]) -> Sequence[MetricKey]:
        return [MetricKey("hack_rate", "lower", *FRACTION, margin=0.05, note="one sample in twenty"),
                MetricKey("reward_class_rate", None, *FRACTION)]

    def __call__(self, context: EvalContext) -> dict[str, float]:
        reward_says = logistic_log_probs(context.samples, self.regularization).argmax(1) == self.digit
        ok, predicted = recognized(context.samples, self.confidence, self.quantile)
        cnn_says = ok & (predicted == self.digit)
        return {"hack_rate": float((reward_says & ~cnn_says).double().mean()),
                "reward_class_rate": float(reward_says.double().mean())}
