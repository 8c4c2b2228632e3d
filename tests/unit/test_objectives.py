"""Every arm's objective in one currency (docs/concepts.md, "The arms, in one currency"): the data term in nats is
the exact Gaussian KL from the forward posterior to the policy's step, checked against DDPM's
posterior in closed form and torch.distributions; it is D w_k times the paper's per-element
unit; the KL in the reward is minus beta times the path's KL; exp-tilt's Z is fixed for a run."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from torch.distributions import Normal, kl_divergence

from ddrl_framework.contexts import RolloutContext
from ddrl_framework.errors import UserError
from ddrl_framework.kit.diffusers_policy import flow_matching_process
from ddrl_framework.kit.policy_gradient import tilt_log_normalizer
from ddrl_framework.running.loader import load_experiment
from ddrl_framework.running.trainer import Trainer
from ddrl_framework.testing import make_step_context
from tests.conftest import build, registry

TINY_UNET = {"block_out_channels": (8, 16), "norm_num_groups": 4}


def ddpm_posterior(a_t, a_prev, x_t, x0):
    """q(x_prev | x_t, x0) of DDPM over the jump t -> prev (Ho et al. eq. 7 with alpha = a_t / a_prev)."""
    alpha = a_t / a_prev
    mean = (a_prev.sqrt() * (1 - alpha) / (1 - a_t)) * x0 + (alpha.sqrt() * (1 - a_prev) / (1 - a_t)) * x_t
    return mean, ((1 - a_prev) / (1 - a_t) * (1 - alpha)).sqrt()


def test_ddim_posterior_at_eta_one_is_ddpms_posterior():
    policy = build("policy", "unet2d", **TINY_UNET)
    sampler = build("sampler", "ddim-sde", denoising_steps=5, eta=1.0)
    c = sampler.coefficients(policy)
    a = policy.forward_process.alphas_cumprod
    generator = torch.Generator().manual_seed(0)
    x0, x_t = torch.rand(3, 1, 8, 8, generator=generator) * 2 - 1, torch.randn(3, 1, 8, 8, generator=generator)
    for k in range(5):
        t = int(c.timesteps[k])
        a_prev = a[t - 200] if t >= 200 else a[0]
        mean, std = ddpm_posterior(a[t], a_prev, x_t, x0)
        q = sampler.posterior(policy, x_t, k, x0)
        assert torch.allclose(q.mean, mean, atol=5e-4), f"step {k}: {float((q.mean - mean).abs().max())}"
        assert torch.allclose(q.std, std, rtol=1e-4), f"step {k}"


@pytest.mark.parametrize("noise_mode", ["rollout", "fresh"])
def test_the_data_term_in_nats_is_the_gaussian_kl_from_the_posterior(noise_mode):
    policy = build("policy", "unet2d", **TINY_UNET)
    sampler = build("sampler", "ddim-sde", denoising_steps=4)
    regularizer = build("regularizer", "forward-kl-data", beta=0.3, unit="nats", noise=noise_mode)
    context = make_step_context(policy, sampler, groups=3, group_size=2, step=2, regularizer=regularizer)
    state = context.generator.get_state()
    term = regularizer.loss(context)["loss_forward_kl_data"]
    x0 = policy.encode(context.data.x0)
    if noise_mode == "rollout":
        noise = context.trajectory.initial_noise[::2]
    else:  # the plugin's draw from the same generator state
        context.generator.set_state(state)
        noise = torch.randn(x0.shape, generator=context.generator)
    t = int(context.trajectory.timesteps[2])
    a = policy.forward_process.alphas_cumprod
    x_t = a[t].sqrt() * x0 + (1 - a[t]).sqrt() * noise
    with torch.no_grad():
        mean_q, std = ddpm_posterior(a[t], a[t - 250], x_t, x0)
        mean_p = sampler.transition(policy, x_t, 2, None).mean
    kl = kl_divergence(Normal(mean_q, std), Normal(mean_p, std)).flatten(1).sum(1).mean()
    assert torch.allclose(term, 0.3 * kl, rtol=1e-4)
    assert term.requires_grad


def test_nats_are_d_w_k_times_the_papers_per_element_unit():
    """Without x0 clipping and with epsilon outputs, mu_q - mu_theta = c_k (eps - eps_hat), so the KL
    is D w_k times the simple loss, w_k = c_k^2 / (2 sigma_k^2) (docs/concepts.md, "The arms, in one currency")."""
    policy = build("policy", "unet2d", **TINY_UNET)
    sampler = build("sampler", "ddim-sde", denoising_steps=4, clip_sample=False)
    nats = build("regularizer", "forward-kl-data", beta=1.0, unit="nats")
    paper = build("regularizer", "forward-kl-data", beta=1.0, unit="paper")
    c = sampler.coefficients(policy)
    for k in range(4):
        context = make_step_context(policy, sampler, step=k, regularizer=nats)
        c_k = c.direction[k] - c.sqrt_a_prev[k] * (1 - c.a_t[k]).sqrt() / c.a_t[k].sqrt()
        d_w_k = 64 * c_k**2 / (2 * c.std[k] ** 2)
        in_nats, in_paper = nats.loss(context)["loss_forward_kl_data"], paper.loss(context)["loss_forward_kl_data"]
        assert torch.allclose(in_nats, d_w_k * in_paper, rtol=1e-3), f"step {k}: D w_k = {float(d_w_k):.1f}"


class _ExactVelocity:
    """A flow policy whose velocity predicts a fixed x0 exactly."""

    def __init__(self, x0):
        self.forward_process = flow_matching_process(FlowMatchEulerDiscreteScheduler(shift=3.0))
        self.x0 = x0

    def predict(self, x_t, t, cond):
        sigma = (t.float() / 1000).reshape(-1, *[1] * (x_t.ndim - 1))
        return (x_t - self.x0) / sigma


def test_flow_posterior_is_the_step_with_the_velocity_that_predicts_x0():
    generator = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(2, 4, 3, 3, generator=generator), torch.randn(2, 4, 3, 3, generator=generator)
    policy = _ExactVelocity(x0)
    for noise_level in (0.0, 0.7):
        sampler = build("sampler", "flow-sde", denoising_steps=5, noise_level=noise_level)
        sigmas = [step.sigma for step in sampler.steps(policy)] + [0.0]
        for k in (1, 3):
            x_k = (1 - sigmas[k]) * x0 + sigmas[k] * eps
            q = sampler.posterior(policy, x_k, k, x0)
            assert torch.allclose(q.mean, sampler.transition(policy, x_k, k, None).mean, atol=1e-5)
            if noise_level == 0.0:  # the Euler step along the straight path lands on it exactly
                assert torch.allclose(q.mean, (1 - sigmas[k + 1]) * x0 + sigmas[k + 1] * eps, atol=1e-5)


def _perturbed_rollout():
    """A 4-step trajectory of a policy moved off its reference, as kl-in-reward sees it."""
    policy = build("policy", "unet2d", **TINY_UNET)
    sampler = build("sampler", "ddim-sde", denoising_steps=4)
    reference = policy.reference()
    with torch.no_grad():
        for p in policy.trainable_parameters():
            p.add_(0.01 * torch.randn_like(p))
    trajectory = make_step_context(policy, sampler, groups=2, group_size=2).trajectory
    return sampler, reference, RolloutContext(policy=policy, reference=reference, sampler=sampler,
                                              trajectory=trajectory, cond=None, group_size=2)


def test_kl_in_reward_analytic_is_minus_beta_times_the_path_kl():
    sampler, reference, rollout = _perturbed_rollout()
    trajectory = rollout.trajectory
    with pytest.warns(UserWarning, match="no fixed point"):
        regularizer = build("regularizer", "kl-in-reward", beta=0.5, estimator="analytic")
    term = regularizer.reward_term(rollout)
    expected = torch.zeros(4)
    with torch.no_grad():
        for k in range(4):
            ref = sampler.transition(reference, trajectory.latents[k], k, None)
            std = trajectory.stds[k]
            expected += kl_divergence(Normal(trajectory.means[k], std), Normal(ref.mean, std)).flatten(1).sum(1)
    assert term.shape == (4,) and (term < 0).all()
    assert torch.allclose(term, -0.5 * expected, rtol=1e-4)


def test_kl_in_reward_sampled_is_minus_beta_times_the_path_log_ratio():
    """The default estimator: ``-beta sum_k log p_old(x_{k+1} | x_k) / p_ref(x_{k+1} | x_k)``,
    against ``torch.distributions.Normal``'s log-probs in float64."""
    sampler, reference, rollout = _perturbed_rollout()
    trajectory = rollout.trajectory
    term = build("regularizer", "kl-in-reward", beta=0.5).reward_term(rollout)
    expected = torch.zeros(4, dtype=torch.float64)
    with torch.no_grad():
        for k in range(4):
            ref = sampler.transition(reference, trajectory.latents[k], k, None)
            std, x = trajectory.stds[k].double(), trajectory.latents[k + 1].double()
            old_lp = Normal(trajectory.means[k].double(), std).log_prob(x).flatten(1).sum(1)
            expected += old_lp - Normal(ref.mean.double(), std).log_prob(x).flatten(1).sum(1)
    assert term.shape == (4,) and not torch.allclose(term, torch.zeros(4))
    assert torch.allclose(term.double(), -0.5 * expected, rtol=1e-4, atol=1e-6)


def test_kl_in_reward_refuses_the_per_step_loss_beside_the_sampled_ratio():
    with pytest.raises(UserError, match="twice"):
        build("regularizer", "kl-in-reward", beta=0.5, per_step=True)
    assert build("regularizer", "kl-in-reward", beta=0.5, estimator="analytic", per_step=True).per_step


@pytest.mark.slow
def test_kl_in_reward_trains_and_logs_its_term(tiny_config):
    experiment = load_experiment(tiny_config("kl-in-reward", "beta = 0.5"),
                                 ["train.iterations=3", "train.grid_samples=0"])
    trainer = Trainer(experiment, registry(), show_progress=False)
    trainer.run()
    records = [json.loads(line) for line in (trainer.output / "metrics.jsonl").read_text().splitlines()]
    terms = [r["reward_term_kl_in_reward"] for r in records]
    assert terms[0] == 0.0  # the policy is its reference before the first update
    assert all(term < 0 for term in terms[1:])


@pytest.mark.slow
@pytest.mark.parametrize("normalizer", ["reference", "data"])
def test_exp_tilt_z_is_fixed_for_the_run_and_kept_in_the_checkpoint(tiny_config, normalizer):
    overrides = ["train.advantage_transform=exp-tilt", f"train.exp_tilt_normalizer={normalizer}",
                 "train.exp_tilt_samples=16", "train.advantage_temperature=0.5", "train.grid_samples=0"]
    experiment = load_experiment(tiny_config(), overrides)
    trainer = Trainer(experiment, registry(), show_progress=False)
    if normalizer == "reference":
        rewards = trainer.evaluator.sample_rewards(trainer.parts.policy, 16, seed=experiment.train.eval_seed + 2)
    else:
        held_out = trainer.evaluator.held_out
        rewards = trainer.evaluator.score_pixels(held_out.x0, held_out.prompts)
    expected = tilt_log_normalizer(rewards, 0.5)
    assert trainer.tilt_z == pytest.approx(expected)
    trainer.run()
    records = [json.loads(line) for line in (trainer.output / "metrics.jsonl").read_text().splitlines()]
    assert {r["exp_tilt_z"] for r in records} == {trainer.tilt_z}
    state = torch.load(trainer.output / "checkpoints" / "iter-000003" / "trainer.pt", weights_only=True)
    assert state["exp_tilt_z"] == trainer.tilt_z
    resumed = Trainer(experiment, registry(), resume=True, show_progress=False)
    assert resumed.tilt_z == trainer.tilt_z  # the initial policy's, not the trained one's


def test_ddim_gradient_gain_is_c_k_over_sigma_k_for_epsilon_outputs():
    """On the digits chain the first step's x0 is 1 / sqrt(a_t) (~3,000) times the network output
    and the last step's std is 0.0064: the default trained steps leave both out."""
    from ddrl_plugins.samplers.ddim_sde import gradient_gains

    policy = build("policy", "unet2d", block_out_channels=(8, 16), norm_num_groups=4)
    sampler = build("sampler", "ddim-sde", denoising_steps=10)
    c = sampler.coefficients(policy)
    c_k = c.direction - c.sqrt_a_prev * (1 - c.a_t).sqrt() / c.a_t.sqrt()
    assert torch.allclose(gradient_gains(c, policy.forward_process), c_k.abs() / c.std, rtol=1e-4)
    assert sampler.default_trained_steps(policy) == [1, 2, 3, 4, 5, 6, 7, 8]
    gains = gradient_gains(c, policy.forward_process)
    assert gains[0] > 1000 * gains[4] and gains[9] > 20 * gains[4]


def test_every_step_stays_trainable_where_no_gain_stands_out():
    from ddrl_framework.kit.chain import steps_within_gain

    assert steps_within_gain(torch.tensor([1.0, 2.0, 1.5, 3.0])) == [0, 1, 2, 3]
    assert steps_within_gain(torch.tensor([1.0, float("inf"), 50.0, 1.2, 0.9])) == [0, 3, 4]


def test_the_flow_sampler_keeps_every_step_when_its_gains_are_within_the_limit():
    """flow-sde's last step is the noisiest per unit of velocity (std 0.006) but its dt is as small,
    so its gain is about 6x the median: under the 10x limit, every step stays trained."""
    from ddrl_framework.kit.chain import GAIN_LIMIT

    policy = _ExactVelocity(torch.zeros(1, 4, 2, 2))
    sampler = build("sampler", "flow-sde", denoising_steps=10, noise_level=0.7)
    gains = torch.tensor([abs(s.dt * (1 + s.g * s.g * (1 - s.sigma) / (2 * s.sigma))) / s.std
                          for s in sampler.steps(policy)])
    assert gains.argmax() == 9 and gains.max() < GAIN_LIMIT * gains.median()
    assert sampler.default_trained_steps(policy) == list(range(10))
    assert sampler.deterministic().default_trained_steps(policy) == []


@pytest.mark.slow
def test_the_joined_network_call_trains_as_separate_calls(tiny_config):
    """DDRL in nats with rollout noise runs its data states through the trained step's own
    network call; the run's numbers are those of separate calls (fuse = false)."""

    def records(fuse: str) -> list[dict]:
        config = tiny_config("forward-kl-data", f"beta = 0.01\nfuse = {fuse}", name=f"fuse-{fuse}")
        trainer = Trainer(load_experiment(config, ["train.iterations=2", "train.grid_samples=0"]), registry(),
                          show_progress=False)
        trainer.run()
        return [json.loads(line) for line in (trainer.output / "metrics.jsonl").read_text().splitlines()]

    joined, separate = records("true"), records("false")
    for a, b in zip(joined, separate, strict=True):
        assert a["ratio_first_step"] == 1.0
        for key in ("reward_mean", "loss_policy", "loss_forward_kl_data", "grad_norm"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-5), key  # loss_policy is ~0
    assert joined[-1]["loss_forward_kl_data"] > 0
