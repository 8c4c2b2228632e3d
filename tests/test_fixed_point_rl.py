"""RL through the real trainer lands on each estimator's closed-form fixed point
(``configs/solvable-linear.toml``: the linear-Gaussian twin, where the affine policy can hold
every fixed point and ``evaluation.fixed_points`` computes it).

For each arm, 3 seeds x 2 coordinates give 6 learned chains; each is read off the trained
policy (its step means at x = 0 and x = 1), and its final marginal is compared with the final
marginals of fixed points by KL, in nats. An arm **reaches** a fixed point when the upper end of
the 99% t interval of its mean KL to it is below ``TOLERANCE`` (a quarter of the 0.0045 nats
between the whole-gradient and the per-step fixed points: what must be resolved) and below the
lower end of its KL to the rival fixed point. The same check fails against the fixed point of
twice the beta, and against the other estimator's."""

from __future__ import annotations

import statistics

import pytest
import torch

from ddrl_framework.comparison.statistics import t_quantile
from ddrl_framework.evaluation.fixed_points import (
    AffineChain, Estimator, LinearGaussianChain, final_kl_to, fixed_point, marginals)
from ddrl_framework.registry import load_registry
from ddrl_framework.running.loader import load_file
from ddrl_framework.running.trainer import Trainer

CONFIG = "configs/solvable-linear.toml"
BETA, SEEDS, TOLERANCE = 0.5, (0, 1, 2), 0.0011
WHOLE, PER_STEP = Estimator(reward_beta=BETA), Estimator(loss_beta=BETA)
OWN = {"kl-in-reward": WHOLE, "kl-in-reward-whole": WHOLE, "reverse-kl": PER_STEP}
RIVAL = {"kl-in-reward": PER_STEP, "kl-in-reward-whole": PER_STEP, "reverse-kl": WHOLE}


def learned_chains(trainer: Trainer) -> tuple[LinearGaussianChain, list[AffineChain]]:
    """The twin's reference chain and the trained policy's affine chain, one per coordinate."""
    policy, sampler = trainer.parts.policy, trainer.parts.sampler
    with torch.no_grad():
        at = [torch.stack([sampler.transition(policy, torch.full((1, 2), x), k, None).mean[0]
                           for k in range(sampler.num_steps)]).double() for x in (0.0, 1.0)]
    c = sampler.coefficients(policy)
    chain = LinearGaussianChain.ddim(a_t=c.a_t, sqrt_a_prev=c.sqrt_a_prev, direction=c.direction, std=c.std,
                                     source_mean=0.0, source_var=0.5142 ** 2, center=0.5, scale=1.0)
    return chain, [AffineChain(p=at[1][:, d] - at[0][:, d], q=at[0][:, d]) for d in range(2)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """arm -> (the chain, the 6 learned chains)."""
    file = load_file(CONFIG, [f"output_dir={tmp_path_factory.mktemp('linear')}"])
    found = {}
    for arm in file.comparison().arms:
        chains = []
        for seed in SEEDS:
            trainer = Trainer(file.run(arm, BETA, seed).experiment, load_registry(), show_progress=False)
            trainer.run()
            chain, learned = learned_chains(trainer)
            chains += learned
        found[arm.name] = (chain, chains)
    return found


def bounds(values: list[float]) -> tuple[float, float]:
    """The 99% t interval of the mean."""
    half = t_quantile(0.995, len(values) - 1) * statistics.stdev(values) / len(values) ** 0.5
    return statistics.fmean(values) - half, statistics.fmean(values) + half


def reaches(chain: LinearGaussianChain, learned: list[AffineChain], target: Estimator, rival: Estimator) -> bool:
    def kls(estimator):
        means, variances = marginals(chain, fixed_point(chain, estimator))
        return [final_kl_to(chain, one, (float(means[-1]), float(variances[-1]))) for one in learned]

    own_high, rival_low = bounds(kls(target))[1], bounds(kls(rival))[0]
    return own_high < TOLERANCE and own_high < rival_low


@pytest.mark.slow
@pytest.mark.parametrize("arm", list(OWN))
def test_rl_reaches_its_own_fixed_point_and_the_check_fails_for_a_wrong_one(trained, arm):
    chain, learned = trained[arm]
    assert reaches(chain, learned, OWN[arm], RIVAL[arm])
    assert not reaches(chain, learned, RIVAL[arm], OWN[arm])  # the other estimator's fixed point
    doubled = Estimator(reward_beta=2 * BETA) if OWN[arm] is WHOLE else Estimator(loss_beta=2 * BETA)
    assert not reaches(chain, learned, doubled, OWN[arm])  # a wrong beta
