"""Evaluation metrics: the Frechet distance against scipy, the optimum reweightings, the built-in
metric plugins' contracts, and evaluation inside a training run."""

import json

import numpy as np
import pytest
import scipy.linalg
import torch

from ddrl_framework.evaluation.frechet import (
    exp_tilt_weights,
    forward_kl_weights,
    frechet_distance,
    weighted_moments,
)
from ddrl_framework.testing import MetricContract, make_eval_context
from ddrl_framework.testing.fakes import FakePolicy
from tests.conftest import build


def scipy_fd(a, b):
    m1, m2 = a.mean(0), b.mean(0)
    c1, c2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(c1 @ c2).real
    return float(((m1 - m2) ** 2).sum() + np.trace(c1 + c2 - 2 * root))


def test_frechet_distance_matches_scipy_sqrtm():
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(300, 6, generator=generator, dtype=torch.float64)
    b = torch.randn(200, 6, generator=generator, dtype=torch.float64) @ torch.randn(6, 6, generator=generator, dtype=torch.float64) + 0.5
    ours = frechet_distance(*weighted_moments(a), *weighted_moments(b))
    assert ours == pytest.approx(scipy_fd(a.numpy(), b.numpy()), rel=1e-6)
    assert frechet_distance(*weighted_moments(a), *weighted_moments(a)) == pytest.approx(0, abs=1e-8)


def test_uniform_weights_give_the_unweighted_moments():
    x = torch.randn(50, 4, dtype=torch.float64)
    for got, expected in zip(weighted_moments(x, torch.ones(50)), weighted_moments(x)):
        assert torch.allclose(got, expected)


def test_exp_tilt_weights_are_the_normalized_exponential():
    r = torch.tensor([0.0, 1.0, 2.0])
    assert torch.allclose(exp_tilt_weights(r, 0.5).float(), torch.softmax(r / 0.5, 0))


def test_forward_kl_weights_solve_the_stationarity_condition():
    r = torch.tensor([0.1, 0.5, 0.9, 0.2], dtype=torch.float64)
    beta = 0.3
    w = forward_kl_weights(r, beta)
    # w_i = (1/N) beta / (lambda - r_i): lambda - r_i = beta / (N w_i) is one lambda for all i
    lam = r + beta / (len(r) * w)
    assert torch.allclose(lam, lam[0].expand(4), rtol=1e-6) and lam[0] > r.max()
    assert w.sum() == pytest.approx(1.0) and w.argmax() == 2  # the best gets the most mass
    # the tilt is weaker than exp-tilt at the same beta
    assert w[2] < exp_tilt_weights(r, beta)[2]


class TestFrechetDistance(MetricContract):
    def make_metric(self):
        return build("metric", "frechet-distance")


class TestWeightedFrechetDistance(MetricContract):
    def metric_options(self):
        return {"weighting": "forward-kl", "temperature": 0.5, "key": "fd_fkl"}

    def make_metric(self):
        return build("metric", "frechet-distance", **self.metric_options())


class TestDiversity(MetricContract):
    def make_metric(self):
        return build("metric", "diversity")


class TestDrift(MetricContract):
    def make_metric(self):
        return build("metric", "drift")


def test_drift_is_zero_against_itself_and_positive_against_another_model():
    from ddrl_plugins.samplers.ddim_sde import DdimSdeSampler

    policy, sampler = FakePolicy(), DdimSdeSampler(denoising_steps=4)
    assert build("metric", "drift")(make_eval_context(policy, sampler))["drift_kl"] == 0.0
    other = make_eval_context(policy, sampler, reference=FakePolicy(seed=3))
    assert build("metric", "drift")(other)["drift_kl"] > 0


def test_weighting_towards_brighter_held_out_images_changes_the_fd():
    from ddrl_plugins.samplers.ddim_sde import DdimSdeSampler

    context = make_eval_context(FakePolicy(), DdimSdeSampler(denoising_steps=4), count=32)
    plain = build("metric", "frechet-distance")(context)["fd"]
    tilted = build("metric", "frechet-distance", weighting="exp-tilt", temperature=0.01)(context)["fd"]
    assert plain != pytest.approx(tilted)


@pytest.mark.slow
def test_training_writes_evaluations_on_schedule(tiny_config):
    from ddrl_framework.cli import main

    config = tiny_config("reverse-kl", "beta = 0.01")
    text = config.read_text() + '\n[[metrics]]\nname = "frechet-distance"\n\n[[metrics]]\nname = "drift"\n'
    config.write_text(text)
    assert main(["train", str(config), "--quiet", "--set", "train.eval_every=2",
                 "--set", "train.eval_samples=32"]) == 0
    records = [json.loads(l) for l in (config.parent / "run" / "eval.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records] == [0, 2, 3]
    assert records[0]["drift_kl"] == 0.0 and records[-1]["drift_kl"] > 0
    assert all(r["fd"] > 0 and "reward_mean" in r for r in records)
