"""RL through the real trainer lands on each estimator's fixed point, computed in closed form
(KL arms) or as the exact maximizer of its expected objective (data arms), on
``configs/solvable-linear.toml``: the linear-Gaussian twin, where the affine policy can hold
every fixed point (``ddrl_framework.evaluation.fixed_points``).

For each arm, 3 seeds x 2 coordinates give 6 learned chains, read off the trained policy (its
step means at x = 0 and x = 1); each final marginal is compared with a fixed point's by KL, in
nats. An arm **reaches** a fixed point when the upper end of the 99% t interval of its mean KL to
it is below the tolerance, a quarter of the KL between that fixed point and the nearest rival
(what must be resolved), and below the lower end of its KL to every rival. Rivals: the other KL
estimator's fixed point, and the fixed points of twice and half the beta (the temperature, for
DDRL). The same check fails when a rival is named the target.

Here, in CI, the two KL arms whose fixed points are each other's rivals (the whole-trajectory
estimator in the reward, and the per-step one): a wrong estimator fails it. Every arm at 5 seeds
is the research run, ``benchmarks/fixed_points.py`` (docs/comparisons.md, "Fixed points in closed
form"), smoke-tested in tests/e2e/test_benchmarks.py."""

from __future__ import annotations

import statistics

import attrs
import pytest

from ddrl_framework.comparison.statistics import t_quantile
from ddrl_framework.evaluation.fixed_points import (
    AffineChain, Estimator, LinearGaussianChain, data_fixed_point, data_log_normalizer, ddim_twin, final_kl_to,
    fixed_point, marginals, read_affine_chains)
from ddrl_framework.registry import load_registry
from ddrl_framework.running.loader import load_file
from ddrl_framework.running.trainer import Trainer

CONFIG = "configs/solvable-linear.toml"
SEEDS = (0, 1, 2)


def whole(beta):
    return lambda chain, z: fixed_point(chain, Estimator(reward_beta=beta))


def per_step(beta):
    return lambda chain, z: fixed_point(chain, Estimator(loss_beta=beta))


def data(beta):
    return lambda chain, z: data_fixed_point(chain, beta)


def tilt(temperature, own_z: bool = False):
    """DDRL's fixed point at T; at the arm's own T with the run's Z (as implemented), else the exact one."""
    return lambda chain, z: data_fixed_point(chain, 1.0, temperature,
                                             z if own_z else data_log_normalizer(chain, temperature))


# arm: (its own fixed point, its rivals); CHECKED: the arms trained here
CHECKED = ("kl-in-reward", "reverse-kl")
FIXED_POINTS = {
    "kl-in-reward": (whole(0.5), [per_step(0.5), whole(1.0), whole(0.25)]),
    "kl-in-reward-whole": (whole(0.5), [per_step(0.5), whole(1.0), whole(0.25)]),
    "reverse-kl": (per_step(0.5), [whole(0.5), per_step(1.0), per_step(0.25)]),
    "forward-kl-data": (data(0.5), [data(1.0), data(0.25)]),
    "ddrl-paper": (tilt(0.5, own_z=True), [tilt(1.0), tilt(0.25)]),
}


def learned_chains(trainer: Trainer) -> tuple[LinearGaussianChain, list[AffineChain]]:
    """The twin's reference chain and the trained policy's affine chain, one per coordinate."""
    policy, sampler = trainer.parts.policy, trainer.parts.sampler
    chain = ddim_twin(policy, sampler, 0.0, 0.5142 ** 2, center=0.5, scale=1.0, dims=2)
    return chain, read_affine_chains(policy, sampler)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """arm -> (the chain, the 6 learned chains, the run's exp-tilt Z or None)."""
    file = load_file(CONFIG, [f"output_dir={tmp_path_factory.mktemp('linear')}"])
    found = {}
    for arm in (a for a in file.comparison().arms if a.name in CHECKED):
        chains, z = [], None
        for seed in SEEDS:
            beta = arm.betas[0] if arm.betas else None
            trainer = Trainer(file.run(arm, beta, seed).experiment, load_registry(), show_progress=False)
            trainer.run()
            chain, learned = learned_chains(trainer)
            chains, z = chains + learned, trainer.tilt_z
        found[arm.name] = (chain, chains, z)
    return found


def final(chain: LinearGaussianChain, point: AffineChain) -> tuple[float, float]:
    means, variances = marginals(chain, point)
    return float(means[-1]), float(variances[-1])


def bounds(values: list[float]) -> tuple[float, float]:
    """The 99% t interval of the mean."""
    half = t_quantile(0.995, len(values) - 1) * statistics.stdev(values) / len(values) ** 0.5
    return statistics.fmean(values) - half, statistics.fmean(values) + half


def reaches(chain: LinearGaussianChain, learned: list[AffineChain], target: AffineChain,
            rivals: list[AffineChain]) -> bool:
    aim = final(chain, target)
    tolerance = min(final_kl_to(chain, rival, aim) for rival in rivals) / 4
    own_high = bounds([final_kl_to(chain, one, aim) for one in learned])[1]
    rival_low = min(bounds([final_kl_to(chain, one, final(chain, rival)) for one in learned])[0] for rival in rivals)
    return own_high < tolerance and own_high < rival_low


@pytest.mark.slow
@pytest.mark.parametrize("arm", CHECKED)
def test_rl_reaches_its_own_fixed_point_and_no_rival(trained, arm):
    chain, learned, z = trained[arm]
    own, rivals = FIXED_POINTS[arm]
    target, others = own(chain, z), [rival(chain, z) for rival in rivals]
    assert reaches(chain, learned, target, others)
    for i, rival in enumerate(others):  # a rival named the target (a wrong beta, or the other estimator's)
        assert not reaches(chain, learned, rival, [target] + others[:i] + others[i + 1:]), i


def test_fixed_point_of_ddrl_paper_in_two_coordinates_is_not_two_independent_ones():
    """The exp-tilt of a sum is a product: with Z of the 2-D reward, each coordinate's fixed
    point differs from the 1-D problem's with 1-D Z, unless it is the exact tilt (it is close)."""
    from tests.unit.test_fixed_points import twin

    one = twin()
    two = attrs.evolve(one, dims=2)
    assert abs(data_log_normalizer(two, 0.5) - 2 * data_log_normalizer(one, 0.5)) < 1e-12
    a = data_fixed_point(one, 1.0, 0.5, data_log_normalizer(one, 0.5))
    b = data_fixed_point(two, 1.0, 0.5, data_log_normalizer(two, 0.5))
    assert 0 < float((a.q - b.q).abs().max()) < 0.05
