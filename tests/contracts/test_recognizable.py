"""``recognizable`` and ``hack-rate``: meaningful far from the data, where FD is not."""

import attrs
import pytest
import torch

from ddrl_framework.errors import UserError
from ddrl_framework.testing import MetricContract, make_eval_context
from ddrl_framework.testing.fakes import FakePolicy
from ddrl_plugins.metrics.recognizable import recognized
from ddrl_plugins.shared.digits import split_digits
from tests.conftest import build


class TestRecognizable(MetricContract):
    def make_metric(self):
        return build("metric", "recognizable")


class TestHackRate(MetricContract):
    def make_metric(self):
        return build("metric", "hack-rate", digit=3)


def held_out():
    split = split_digits()
    return split.images[split.held_out], split.labels[split.held_out]


def fraction(samples, confidence=0.9, quantile=0.99):
    return recognized(samples, confidence, quantile)[0].double().mean().item()


def test_held_out_digits_are_recognized_and_canvases_and_noise_are_not():
    images, _ = held_out()
    assert fraction(images) > 0.9
    assert fraction(torch.ones(32, 1, 8, 8)) == 0.0  # the brightness hack: a white canvas
    assert fraction(torch.full((32, 1, 8, 8), 0.6)) == 0.0
    assert fraction(torch.rand(256, 1, 8, 8, generator=torch.Generator().manual_seed(0))) < 0.3


def test_confidence_alone_would_count_more_noise_as_digits():
    noise = torch.rand(256, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    assert fraction(noise, quantile=0.999999) > fraction(noise)


def test_hack_rate_counts_what_only_the_reward_calls_a_three():
    from ddrl_plugins.samplers.ddim_sde import DdimSdeSampler
    from ddrl_plugins.shared.digits_logistic import logistic_log_probs

    images, labels = held_out()
    context = make_eval_context(FakePolicy(), DdimSdeSampler(denoising_steps=4), count=8)
    metric = build("metric", "hack-rate", digit=3)
    honest = metric(attrs.evolve(context, samples=images[labels == 3]))
    assert honest["reward_class_rate"] > 0.9 and honest["hack_rate"] < 0.1
    # uniform noise that the reward's linear classifier calls a 3: mostly no 3 to the CNN
    noise = torch.rand(4096, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    fooling = noise[logistic_log_probs(noise, 1.0).argmax(1) == 3]
    hacked = metric(attrs.evolve(context, samples=fooling))
    assert hacked["reward_class_rate"] == 1.0 and hacked["hack_rate"] > 0.5


def test_a_confidence_outside_zero_one_is_a_user_error():
    with pytest.raises(UserError, match="confidence"):
        build("metric", "recognizable", confidence=1.5)
