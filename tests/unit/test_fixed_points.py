"""The closed-form fixed points of evaluation/fixed_points.py, held against an independent
reference: the expected gradient of each estimator, written as exact Gaussian moments of the
chain and differentiated by autograd. At an estimator's fixed point its own expected gradient is
0 and the others' are not; the numbers the docs quote (how far each lands from
``p_ref exp(r / beta)``) are pinned here. ``pytest -k fixed_point`` runs them all in seconds."""

from __future__ import annotations

import pytest
import torch

from ddrl_framework.evaluation.fixed_points import (
    AffineChain, Estimator, LinearGaussianChain, expected_reward, final_kl_to, fixed_point, marginals,
    path_kl, reference_tilt)
from ddrl_framework.kit.forward_process import DdpmProcess
from ddrl_plugins.policies.mlp_denoiser import MlpConfig, _alphas_cumprod
from ddrl_plugins.samplers.ddim_sde import _coefficients

BETA = 0.5
# the solvable benchmark's data, one coordinate, moment-matched by one Gaussian: corners at
# +-0.5 with std 0.12; the reward's centre 0.5, scale 1
SOURCE_MEAN, SOURCE_VAR = 0.0, 0.25 + 0.12 ** 2


def twin(steps: int = 20) -> LinearGaussianChain:
    """The benchmark's chain: ddim-sde at eta 1 on the cosine DDPM schedule, the exact denoiser."""
    process = DdpmProcess(alphas_cumprod=_alphas_cumprod(MlpConfig()))
    c = _coefficients(process, steps, 1.0, "trailing", False)
    return LinearGaussianChain.ddim(a_t=c.a_t, sqrt_a_prev=c.sqrt_a_prev, direction=c.direction, std=c.std,
                                    source_mean=SOURCE_MEAN, source_var=SOURCE_VAR, center=0.5, scale=1.0)


def expected_gradient(chain: LinearGaussianChain, policy: AffineChain, own: float, value: float,
                      trained: list[int] | None = None) -> torch.Tensor:
    """The estimator's expected gradient ``[2K]`` from exact moments: the reward and the KL as a
    cost-to-go (weight ``value``) through the states, plus each step's KL at frozen states
    (weight ``own``); untrained steps have none."""
    p, q = policy.p.clone().requires_grad_(), policy.q.clone().requires_grad_()
    m, v = torch.tensor(chain.start_mean, dtype=torch.float64), torch.tensor(chain.start_var, dtype=torch.float64)
    objective = torch.zeros((), dtype=torch.float64)
    for k in range(chain.steps):
        var = chain.sigma[k] ** 2

        def kl(p_k, q_k, m_k, v_k):
            return (((p_k - chain.a[k]) * m_k + q_k - chain.b[k]) ** 2 + (p_k - chain.a[k]) ** 2 * v_k) / (2 * var)

        objective = objective - value * kl(p[k].detach(), q[k].detach(), m, v) - own * kl(p[k], q[k], m.detach(), v.detach())
        m, v = p[k] * m + q[k], p[k] ** 2 * v + var
    objective = objective - chain.scale * ((m - chain.center) ** 2 + v)
    p_grad, q_grad = torch.autograd.grad(objective, (p, q))
    keep = torch.zeros(chain.steps, dtype=torch.bool)
    keep[list(range(chain.steps)) if trained is None else trained] = True
    return torch.cat([p_grad[keep], q_grad[keep]])


ESTIMATORS = {  # name: (the estimator, (beta_own, beta_value))
    "whole (kl-in-reward sampled)": (Estimator(reward_beta=BETA, reward_kl="sampled"), (BETA, BETA)),
    "whole (analytic + per_step)": (Estimator(loss_beta=BETA, reward_beta=BETA, reward_kl="analytic"), (BETA, BETA)),
    "per-step loss (reverse-kl)": (Estimator(loss_beta=BETA), (BETA, 0.0)),
    "analytic in the reward": (Estimator(reward_beta=BETA, reward_kl="analytic"), (0.0, BETA)),
}


@pytest.mark.parametrize("name", ESTIMATORS)
def test_fixed_point_zeroes_its_own_expected_gradient_only(name):
    chain = twin()
    estimator, weights = ESTIMATORS[name]
    assert estimator.weights() == weights
    point = fixed_point(chain, estimator)
    scale = expected_gradient(chain, chain.reference, *weights).abs().max()
    assert scale > 0.5  # the reference is not a fixed point: the test can fail
    assert expected_gradient(chain, point, *weights).abs().max() < 1e-9 * scale
    for other_name, (_, other) in ESTIMATORS.items():
        if other != weights:
            assert expected_gradient(chain, point, *other).abs().max() > 1e-4 * scale, other_name


def test_fixed_point_of_a_wrong_beta_is_not_stationary():
    chain = twin()
    wrong = fixed_point(chain, Estimator(reward_beta=2 * BETA))
    assert expected_gradient(chain, wrong, BETA, BETA).abs().max() > 1e-3


def test_fixed_point_with_untrained_steps_keeps_them_at_the_reference():
    chain, trained = twin(), list(range(1, 19))
    point = fixed_point(chain, Estimator(reward_beta=BETA, trained=tuple(trained)))
    for k in (0, 19):
        assert point.p[k] == chain.a[k] and point.q[k] == chain.b[k]
    assert expected_gradient(chain, point, BETA, BETA, trained).abs().max() < 1e-9
    assert not torch.allclose(point.p, fixed_point(chain, Estimator(reward_beta=BETA)).p)


def test_fixed_point_of_a_group_mean_baseline_is_that_of_a_larger_loss_beta():
    """A baseline that includes the sample scales the reward channel by (G - 1) / G: the loss's
    beta acts at G / (G - 1) of itself; the sampled log ratio rides the reward and is unchanged."""
    chain = twin()
    biased = fixed_point(chain, Estimator(loss_beta=BETA, biased_group=8))
    assert torch.allclose(biased.p, fixed_point(chain, Estimator(loss_beta=BETA * 8 / 7)).p)
    sampled = Estimator(reward_beta=BETA, biased_group=8)
    assert torch.equal(fixed_point(chain, sampled).p, fixed_point(chain, Estimator(reward_beta=BETA)).p)


@pytest.mark.parametrize("steps", [20, 100])
def test_fixed_point_distances_to_the_stated_optimum(steps):
    """What the docs quote: the whole gradient lands within 0.002 nats of ``p_ref exp(r / beta)``
    (the cost of a fixed-variance step), the per-step loss 0.005-0.01 nats away at 20 and at 100
    steps (more steps do not close it), the analytic KL in the reward hundreds of nats of path KL
    from the reference with its final marginal far from the target."""
    chain = twin(steps)
    target = reference_tilt(chain, BETA)
    whole = fixed_point(chain, Estimator(reward_beta=BETA))
    per_step = fixed_point(chain, Estimator(loss_beta=BETA))
    analytic = fixed_point(chain, Estimator(reward_beta=BETA, reward_kl="analytic"))
    assert final_kl_to(chain, whole, target) < 0.002
    assert 0.005 < final_kl_to(chain, per_step, target) < 0.01
    assert path_kl(chain, analytic) > 100 and final_kl_to(chain, analytic, target) > 1.0
    # the per-step fixed point under-tilts: less reward than the target's
    target_reward = -((target[0] - 0.5) ** 2 + target[1])
    assert expected_reward(chain, per_step) < target_reward < expected_reward(chain, fixed_point(
        chain, Estimator()))


def test_fixed_point_reference_chain_keeps_the_source_mean_and_approaches_its_variance():
    """The reference's final marginal is ``p_ref`` (what the stated optimum tilts): the source's
    mean, and a variance below the source's that a finer chain closes (DDIM steps with the
    posterior *mean* of x0 lose the posterior's spread: 0.199 at 20 steps, 0.247 at 100, 0.264
    in the limit)."""
    variances = []
    for steps in (20, 100):
        chain = twin(steps)
        means, var = marginals(chain, chain.reference)
        assert abs(float(means[-1]) - SOURCE_MEAN) < 1e-9 and path_kl(chain, chain.reference) == 0.0
        variances.append(float(var[-1]))
    assert variances[0] < variances[1] < SOURCE_VAR and SOURCE_VAR - variances[1] < 0.02


def test_fixed_point_twin_chain_is_the_samplers_chain_on_the_affine_policy():
    """``LinearGaussianChain.ddim`` against the framework's own ddim-sde steps of the affine
    policy started as the exact denoiser (configs/solvable-linear.toml's policy and sampler):
    the step means at x = 0 and x = 1 give b_k and a_k + b_k."""
    from ddrl_framework.registry import load_registry

    registry = load_registry()
    policy = registry.build("policy", "mlp-denoiser", {"architecture": "affine", "prediction_type": "sample",
                                                       "source_std": SOURCE_VAR ** 0.5}, "[policy]")
    sampler = registry.build("sampler", "ddim-sde", {"denoising_steps": 20, "clip_sample": False}, "[sampler]")
    chain = twin()
    with torch.no_grad():
        for k in range(20):
            at_0, at_1 = (float(sampler.transition(policy, torch.full((1, 2), x), k, None).mean[0, 0])
                          for x in (0.0, 1.0))
            assert abs(at_0 - float(chain.b[k])) < 1e-5 and abs(at_1 - at_0 - float(chain.a[k])) < 1e-5, k
