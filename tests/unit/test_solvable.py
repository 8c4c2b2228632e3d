"""The exactly solvable benchmark's parts: the closed forms against independent computations (grid
integration, Monte-Carlo with ``torch.distributions``, scipy), the energy distance, the metric
(near its floor on samples of its target, far above it on samples of another distribution), and
the contract suites of the new plugins. End-to-end runs: tests/e2e/test_solvable_e2e.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch

from ddrl_framework.contexts import EvalContext
from ddrl_framework.errors import UserError
from ddrl_framework.evaluation.energy import energy_distance, mean_distance
from ddrl_framework.evaluation.frechet import forward_kl_weights
from ddrl_framework.evaluation.optima import (
    effective_size,
    exact_draws,
    exp_tilt,
    forward_kl,
    forward_kl_lambda,
)
from ddrl_framework.testing import (
    DataSourceContract,
    FakeSampler,
    MetricContract,
    PolicyContract,
    RegularizerContract,
    RewardModelContract,
    SamplerContract,
)
from ddrl_framework.types import DataBatch
from ddrl_plugins.shared.solvable import GaussianMixture, grid, quadratic_reward
from tests.conftest import build

CENTER, SCALE = (0.5, 0.5), 1.0
MIXTURE = GaussianMixture.of([(-0.5, -0.5), (0.5, -0.5), (-0.5, 0.5), (0.5, 0.5)], [0.12, 0.1, 0.15, 0.12],
                             [0.3, 0.2, 0.1, 0.4])


def independent_sample(mixture: GaussianMixture, count: int, seed: int) -> torch.Tensor:
    """A sample drawn by ``torch.distributions`` (not by ``GaussianMixture.sample``)."""
    torch.manual_seed(seed)
    return mixture.distribution().sample((count,))


def weighted_moments(points, weights):
    w = weights / weights.sum()
    mean = w @ points
    centered = points - mean
    return mean, (centered.T * w) @ centered


# --- the Gaussian mixture and its tilt ------------------------------------------------------------


def test_mixture_log_prob_is_torch_distributions():
    x = independent_sample(MIXTURE, 500, 0)
    assert torch.allclose(MIXTURE.log_prob(x), MIXTURE.distribution().log_prob(x), atol=1e-10)


def test_mixture_samples_have_the_closed_form_moments():
    x = MIXTURE.sample(200_000, torch.Generator().manual_seed(0))
    assert torch.allclose(x.mean(0), MIXTURE.mean(), atol=5e-3)
    assert torch.allclose(torch.cov(x.T), MIXTURE.covariance(), atol=5e-3)
    # and the two samplers draw one distribution: their energy distance is at the floor of two samples
    other = independent_sample(MIXTURE, 4000, 1)
    floor = energy_distance(independent_sample(MIXTURE, 4000, 2), other)
    assert energy_distance(x[:4000], other) < 3 * floor


@pytest.mark.parametrize("beta", [0.25, 0.5, 2.0])
def test_tilt_is_the_grid_integral_of_p_data_exp_r_over_beta(beta):
    """``p_data exp(r / beta) / Z`` with Z integrated numerically equals the closed-form mixture."""
    points, area = grid(-3.0, 3.0, 600)
    unnormalized = MIXTURE.log_prob(points).exp() * torch.exp(quadratic_reward(points, CENTER, SCALE) / beta)
    numeric = unnormalized / (unnormalized.sum() * area)
    closed = MIXTURE.tilted(CENTER, SCALE, beta).log_prob(points).exp()
    assert float((numeric - closed).abs().max()) < 1e-4 * float(closed.max())
    assert float(closed.sum() * area) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("beta", [0.25, 1.0])
def test_tilt_is_the_monte_carlo_reweighting_of_data(beta):
    """Data drawn by ``torch.distributions``, self-normalized weights ``exp(r / beta)``: their
    moments and the mass near each component are the closed form's."""
    x = independent_sample(MIXTURE, 400_000, 3)
    weights = exp_tilt(quadratic_reward(x, CENTER, SCALE), beta)
    tilted = MIXTURE.tilted(CENTER, SCALE, beta)
    mean, covariance = weighted_moments(x, weights)
    assert torch.allclose(mean, tilted.mean(), atol=4e-3)
    assert torch.allclose(covariance, tilted.covariance(), atol=4e-3)
    nearest = torch.cdist(x, MIXTURE.means).argmin(1)
    mass = torch.zeros(4, dtype=torch.float64).index_add_(0, nearest, weights)
    exact = tilted.sample(400_000, torch.Generator().manual_seed(4))
    exact_mass = torch.bincount(torch.cdist(exact, MIXTURE.means).argmin(1), minlength=4) / len(exact)
    assert torch.allclose(mass, exact_mass.double(), atol=5e-3)


def test_tilt_moves_the_means_and_shrinks_the_stds_as_the_product_of_gaussians_says():
    tilted = MIXTURE.tilted(CENTER, SCALE, 0.5)
    tau2 = 0.5 / (2 * SCALE)
    assert torch.allclose(tilted.stds.square(), 1 / (1 / MIXTURE.stds.square() + 1 / tau2))
    assert torch.allclose(tilted.means[3], torch.tensor(CENTER, dtype=torch.float64))  # a component at c stays
    assert tilted.weights[3] > MIXTURE.weights[3] and tilted.weights[0] < MIXTURE.weights[0]


# --- the forward-KL optimum -----------------------------------------------------------------------


def test_forward_kl_with_uniform_base_is_the_frechet_module_s_reweighting():
    r = quadratic_reward(independent_sample(MIXTURE, 1000, 5), CENTER, SCALE)
    assert torch.allclose(forward_kl(r, 0.5), forward_kl_weights(r, 0.5), atol=1e-12)


@pytest.mark.parametrize("beta", [0.5, 1.0])
def test_forward_kl_optimum_on_a_grid_and_on_a_data_sample_agree(beta):
    """lambda of ``beta p_data / (lambda - r)`` integrated on a grid equals lambda solved on a
    sample of p_data, the optimum is stationary (``r + beta p_data / p* = lambda``) and normalized,
    and the weighted sample has the grid density's moments."""
    points, area = grid(-3.0, 3.0, 600)
    base = MIXTURE.log_prob(points).exp() * area
    r_grid = quadratic_reward(points, CENTER, SCALE)
    lam_grid = forward_kl_lambda(r_grid, beta, base)
    density = beta * MIXTURE.log_prob(points).exp() / (lam_grid - r_grid)
    assert float(density.sum() * area) == pytest.approx(1.0, abs=1e-3)
    inside = base > 1e-8
    stationary = r_grid[inside] + beta * MIXTURE.log_prob(points).exp()[inside] / density[inside]
    assert torch.allclose(stationary, torch.full_like(stationary, lam_grid))
    x = independent_sample(MIXTURE, 400_000, 6)
    r = quadratic_reward(x, CENTER, SCALE)
    assert forward_kl_lambda(r, beta) == pytest.approx(lam_grid, rel=2e-2)
    mean, covariance = weighted_moments(x, forward_kl(r, beta))
    grid_mean, grid_covariance = weighted_moments(points, density * area)
    assert torch.allclose(mean, grid_mean, atol=5e-3) and torch.allclose(covariance, grid_covariance, atol=5e-3)


def test_forward_kl_is_a_weaker_tilt_than_the_exponential_at_the_same_beta():
    x = independent_sample(MIXTURE, 100_000, 7)
    r = quadratic_reward(x, CENTER, SCALE)
    mean_reward = {name: float(w @ r) for name, w in
                   [("data", torch.full((len(r),), 1 / len(r), dtype=torch.float64)),
                    ("forward", forward_kl(r, 0.5)), ("tilt", exp_tilt(r, 0.5))]}
    assert mean_reward["data"] < mean_reward["forward"] < mean_reward["tilt"]


def test_exact_draws_are_distinct_draws_of_the_reweighted_pool():
    pool = independent_sample(MIXTURE, 100_000, 8)
    weights = exp_tilt(quadratic_reward(pool, CENTER, SCALE), 0.5)
    draws = exact_draws(pool, weights, 20_000, torch.Generator().manual_seed(0))
    assert len(draws) == 20_000 and len(torch.unique(draws, dim=0)) == 20_000
    tilted = MIXTURE.tilted(CENTER, SCALE, 0.5)
    assert torch.allclose(draws.mean(0), tilted.mean(), atol=1e-2)
    assert torch.allclose(torch.cov(draws.T), tilted.covariance(), atol=1e-2)
    few = exact_draws(pool[:100], weights[:100], 1_000, torch.Generator().manual_seed(0))
    assert len(few) < 100  # a pool too small gives fewer, never repeats
    assert effective_size(torch.ones(10)) == pytest.approx(10.0)


# --- the energy distance --------------------------------------------------------------------------


def test_energy_distance_in_one_dimension_is_scipy_s_squared():
    generator = np.random.default_rng(0)
    x, y = generator.normal(size=300), generator.normal(0.3, 1.5, size=200)
    a, b = generator.uniform(0.1, 1, size=300), generator.uniform(0.1, 1, size=200)
    ours = energy_distance(torch.tensor(x)[:, None], torch.tensor(y)[:, None], torch.tensor(a), torch.tensor(b))
    assert ours == pytest.approx(scipy.stats.energy_distance(x, y, a, b) ** 2, rel=1e-9)


def test_energy_distance_in_two_dimensions_is_the_double_sum():
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 2, generator=generator), torch.randn(30, 2, generator=generator) + 0.5
    a, b = torch.rand(40, generator=generator), torch.rand(30, generator=generator)
    a, b = a / a.sum(), b / b.sum()
    brute = sum(2 * a[i] * b[j] * (x[i] - y[j]).norm() for i in range(40) for j in range(30))
    brute -= sum(a[i] * a[j] * (x[i] - x[j]).norm() for i in range(40) for j in range(40))
    brute -= sum(b[i] * b[j] * (y[i] - y[j]).norm() for i in range(30) for j in range(30))
    assert energy_distance(x, y, a, b) == pytest.approx(float(brute), rel=1e-5)
    # a weight of 2 is the point counted twice; chunking changes nothing
    doubled = torch.cat([x, x[:1]])
    assert energy_distance(doubled, y) == pytest.approx(
        energy_distance(x, y, torch.tensor([2.0] + [1.0] * 39)), rel=1e-12)
    assert mean_distance(x, None, y, None, chunk=7) == pytest.approx(mean_distance(x, None, y, None), rel=1e-12)
    assert energy_distance(x, x) == 0.0


# --- the metric -----------------------------------------------------------------------------------


def _score(pixels, prompts):
    return quadratic_reward(pixels.float(), CENTER, SCALE)


def eval_context(samples, held_out: torch.Tensor, policy=None, sampler=None) -> EvalContext:
    """What an evaluation hands a metric, for ``samples`` ``[N, 2]`` against ``held_out`` points."""
    policy = policy or build("policy", "mlp-denoiser", hidden=16, layers=1)
    samples = samples.float()
    return EvalContext(
        policy=policy, reference=policy.reference(), sampler=sampler or FakeSampler(), trajectory=None,
        cond=None, samples=samples, prompts=("",) * len(samples), rewards=_score(samples, None),
        score=_score, held_out=DataBatch(prompts=("",) * len(held_out), x0=held_out.float()))


def metric(target, **options):
    return build("metric", "distance-to-optimum", target=target, beta=0.5, **options)


def exact_target_sample(target: str, count: int, seed: int) -> torch.Tensor:
    """Independent exact draws of a target: the closed forms, or rejection from a fresh data pool."""
    generator = torch.Generator().manual_seed(seed)
    if target == "data":
        return DATA.sample(count, generator)
    if target == "tilt":
        return DATA.tilted(CENTER, SCALE, 0.5).sample(count, generator)
    pool = DATA.sample(20 * count, generator)
    return exact_draws(pool, forward_kl(quadratic_reward(pool, CENTER, SCALE), 0.5), count, generator)


DATA = GaussianMixture.of([(-0.5, -0.5), (0.5, -0.5), (-0.5, 0.5), (0.5, 0.5)], [0.12])


@pytest.fixture(scope="module")
def held_out():
    return build("data", "gaussian-mixture", held_out_size=12_000, train_size=10).held_out().x0


@pytest.mark.parametrize("target", ["data", "tilt", "forward-kl"])
def test_the_metric_is_at_its_floor_on_its_target_and_far_above_it_elsewhere(target, held_out):
    measure = metric(target)
    hit = measure(eval_context(exact_target_sample(target, 1000, seed=11), held_out))
    name = measure.name
    assert hit[f"{name}_floor"] > 0
    assert hit[name] < 3 * hit[f"{name}_floor"], hit
    others = {"data": "tilt", "tilt": "data", "forward-kl": "data"}
    miss = measure(eval_context(exact_target_sample(others[target], 1000, seed=12), held_out))
    assert miss[name] > 20 * miss[f"{name}_floor"], miss
    expected_reward = {"data": DATA, "tilt": DATA.tilted(CENTER, SCALE, 0.5)}.get(target)
    if expected_reward is not None:  # the target's mean reward, in closed form by Monte-Carlo
        exact = quadratic_reward(expected_reward.sample(200_000, torch.Generator().manual_seed(0)), CENTER, SCALE)
        assert hit[f"{name}_reward"] == pytest.approx(float(exact.mean()), abs=0.02)


def test_the_reference_tilt_metric_rolls_out_the_reference_once():
    """An untrained reference (its own distribution, not the data's): exact draws of its tilt
    are at the floor, its untilted outputs far above it."""
    policy = build("policy", "mlp-denoiser", hidden=16, layers=1, seed=3)
    sampler = build("sampler", "ddim-sde", denoising_steps=5)
    reference = policy.reference()
    measure = build("metric", "distance-to-optimum", target="reference-tilt", beta=1.0, reference_samples=8000)
    assert measure.needs_reference and not metric("tilt").needs_reference
    generator = torch.Generator().manual_seed(99)  # other noise than the metric's own pools
    with torch.no_grad():
        pool = sampler.rollout(reference, None, torch.randn(40_000, 2, generator=generator), generator).final
    on_target = exact_draws(pool, exp_tilt(_score(pool, None), 1.0), 500, generator)
    held = DATA.sample(8000, torch.Generator().manual_seed(1))
    hit = measure(eval_context(on_target, held, policy, sampler))
    assert hit["dist_reference_tilt"] < 3 * hit["dist_reference_tilt_floor"], hit
    miss = measure(eval_context(pool[:500], held, policy, sampler))  # the reference, untilted
    assert miss["dist_reference_tilt"] > 10 * miss["dist_reference_tilt_floor"], miss
    assert miss["dist_reference_tilt_reference_to_data"] > 0
    assert len([key for key in measure._cache if key[0] == "reference"]) == 1


def test_the_metric_says_when_its_pool_is_too_small_for_the_floor(held_out):
    samples = exact_target_sample("tilt", 5000, seed=0)
    with pytest.raises(ValueError, match=r"fewer than the 5000 evaluation samples; raise the data source"):
        metric("tilt")(eval_context(samples, held_out[:6000]))


# --- contract suites ------------------------------------------------------------------------------


class TestMlpDenoiser(PolicyContract):
    decodes_to_unit_range = False  # points of R^2, not pixels

    def make_policy(self):
        return build("policy", "mlp-denoiser", hidden=16, layers=2)

    def load_policy(self, directory):
        return build("policy", "mlp-denoiser", pretrained=str(directory))


class TestMlpDenoiserVPrediction(TestMlpDenoiser):
    def make_policy(self):
        return build("policy", "mlp-denoiser", hidden=16, layers=2, dim=3, prediction_type="v_prediction")


class TestAffineDenoiser(TestMlpDenoiser):
    def make_policy(self):
        return build("policy", "mlp-denoiser", architecture="affine", prediction_type="sample", source_std=0.5)


def test_the_affine_denoiser_starts_as_the_exact_denoiser_of_its_gaussian_source():
    """Against least squares on Monte-Carlo draws: for x0 ~ N(m, s^2) and x_t its noised copy,
    the regression of x0 on x_t is E[x0 | x_t] (jointly Gaussian), which the affine policy's x0
    prediction must equal at every timestep checked, in each parametrization."""
    generator = torch.Generator().manual_seed(0)
    mean, std = 0.3, 0.6
    x0 = mean + std * torch.randn(400_000, 1, generator=generator, dtype=torch.float64)
    noise = torch.randn(x0.shape, generator=generator, dtype=torch.float64)
    for prediction_type in ("sample", "epsilon", "v_prediction"):
        policy = build("policy", "mlp-denoiser", architecture="affine", dim=1, prediction_type=prediction_type,
                       source_mean=mean, source_std=std)
        process = policy.forward_process
        for t in (10, 500, 990):
            a = process.alphas_cumprod[t].double()
            x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
            centered = x_t - x_t.mean()
            slope = float((centered * (x0 - x0.mean())).mean() / centered.square().mean())
            shift = float(x0.mean() - slope * x_t.mean())
            grid = torch.tensor([[0.0], [1.0]])
            output = policy.predict(grid, torch.full((2,), t), None)
            predicted, _ = process.x0_and_eps(output, grid, a.float())
            assert abs(float(predicted[1] - predicted[0]) - slope) < 0.01, (prediction_type, t)
            assert abs(float(predicted[0]) - shift) < 0.01, (prediction_type, t)


def test_an_mlp_cannot_start_as_the_exact_denoiser():
    with pytest.raises(Exception, match="affine"):
        build("policy", "mlp-denoiser", source_std=0.5)


class TestDdimSdeOnMlpDenoiser(SamplerContract):
    def make_sampler(self):
        return build("sampler", "ddim-sde", denoising_steps=5, eta=1.0)

    def make_policy(self):
        return build("policy", "mlp-denoiser", hidden=16, layers=2)


class TestGaussianMixtureData(DataSourceContract):
    def make_data_source(self):
        return build("data", "gaussian-mixture", train_size=100, held_out_size=50)


class TestQuadratic(RewardModelContract):
    def make_reward(self):
        return build("reward", "quadratic", center=[0.5, 0.5], scale=2.0)

    def make_samples(self):
        return torch.rand((4, 2), generator=torch.Generator().manual_seed(0))


class _DistanceSuite(MetricContract):
    target = "data"

    def make_metric(self):
        return build("metric", "distance-to-optimum", target=self.target, beta=1.0, reference_samples=2000)

    def make_policy(self):
        return build("policy", "mlp-denoiser", hidden=16, layers=1)

    def make_sampler(self):
        return build("sampler", "ddim-sde", denoising_steps=4)

    def make_context(self):
        policy = self.make_policy()
        with torch.no_grad():
            noise = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
            samples = self.make_sampler().rollout(policy, None, noise, torch.Generator().manual_seed(1)).final
        return eval_context(samples, DATA.sample(2000, torch.Generator().manual_seed(2)), policy,
                            self.make_sampler())


class TestDistanceToData(_DistanceSuite):
    target = "data"


class TestDistanceToTilt(_DistanceSuite):
    target = "tilt"


class TestDistanceToReferenceTilt(_DistanceSuite):
    target = "reference-tilt"


class TestDistanceToForwardKL(_DistanceSuite):
    target = "forward-kl"


class TestKLInRewardPerStep(RegularizerContract):
    def make_regularizer(self):
        return build("regularizer", "kl-in-reward", beta=0.3, estimator="analytic", per_step=True)

    def test_the_per_step_loss_is_reverse_kl_s(self, setup, context):
        """With ``per_step`` the loss is ``reverse-kl``'s at the same beta (the direct part of the
        path KL's gradient); the reward term is unchanged; without it the loss is 0."""
        ours = setup.regularizer.loss(context)["loss_kl_in_reward"]
        reverse = build("regularizer", "reverse-kl", beta=0.3).loss(context)["loss_reverse_kl"]
        assert float(ours.detach()) > 0 and torch.allclose(ours, reverse)
        assert build("regularizer", "kl-in-reward", beta=0.3).needs_reference_transition is False  # sampled
        assert setup.regularizer.needs_reference_transition is True
        plain = build("regularizer", "kl-in-reward", beta=0.3).loss(context)["loss_kl_in_reward"]
        assert float(plain.detach()) == 0.0


# --- the plugins' own behaviour -------------------------------------------------------------------


def test_the_contract_switch_leaves_the_round_trip_checked():
    """``decodes_to_unit_range = False`` drops the [0, 1] range only: a lossy codec still fails, and
    the default suite still refuses a point policy's decode."""

    class Lossy:
        def __init__(self):
            self.inner = build("policy", "mlp-denoiser", hidden=8, layers=1)
            self.sample_shape = self.inner.sample_shape

        def decode(self, latents):
            return latents

        def encode(self, pixels):
            return pixels * 0.5

    with pytest.raises(AssertionError, match=r"decode\(encode\(pixels\)\) is off by up to"):
        TestMlpDenoiser().test_decode_is_in_unit_range_and_encode_inverts_it(Lossy())

    class Strict(PolicyContract):
        pass

    with pytest.raises(AssertionError, match=r"expected \[0, 1\] \(a suite for a policy of points"):
        Strict().test_decode_is_in_unit_range_and_encode_inverts_it(TestMlpDenoiser().make_policy())


def test_the_data_source_draws_its_mixture():
    source = build("data", "gaussian-mixture", means=[[0.0, 1.0], [2.0, 0.0]], stds=[0.1, 0.3],
                   weights=[1.0, 3.0], train_size=40_000, held_out_size=40_000, seed=5)
    mixture = source.mixture
    assert torch.allclose(mixture.weights, torch.tensor([0.25, 0.75], dtype=torch.float64))
    for x in (torch.cat([next(source.loader(1000, 0)).x0 for _ in range(1)]), source.held_out().x0):
        assert x.shape[1] == 2 and x.dtype == torch.float32
    held_out = source.held_out().x0.double()
    assert torch.allclose(held_out.mean(0), mixture.mean(), atol=2e-2)
    assert torch.allclose(torch.cov(held_out.T), mixture.covariance(), atol=2e-2)
    assert torch.equal(source.held_out().x0, held_out.float()) and set(source.held_out().prompts) == {""}
    with pytest.raises(UserError, match=r"\[data\]: data source 'gaussian-mixture' .* 2 means need 1 or 2 stds"):
        build("data", "gaussian-mixture", means=[[0.0, 1.0], [2.0, 0.0]], stds=[0.1, 0.2, 0.3])


def test_the_quadratic_reward_and_its_refusal_of_a_wrong_dimension():
    reward = build("reward", "quadratic", center=[1.0, -1.0], scale=3.0)
    x = torch.tensor([[1.0, -1.0], [0.0, 0.0]])
    assert torch.allclose(reward(x, ("", ""), {}), torch.tensor([0.0, -6.0]))
    with pytest.raises(ValueError, match="samples of 3 values, a center of 2"):
        reward(torch.zeros(2, 3), ("", ""), {})


def test_the_mlp_denoiser_reference_is_a_frozen_copy_and_predicts_the_shape():
    policy = build("policy", "mlp-denoiser", dim=3, hidden=8, layers=1)
    assert policy.sample_shape == (3,)
    out = policy.predict(torch.randn(5, 3), torch.tensor(10), None)
    assert out.shape == (5, 3)
    assert math.isclose(float(policy.forward_process.alphas_cumprod[0]), 0.99996, rel_tol=1e-4)
