"""The invariants of the math (docs/concepts.md, "The objective"), pinned against independent references."""

import math

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from ddrl_framework.kit.policy_gradient import clipped_policy_loss, group_advantages, tilt_log_normalizer
from ddrl_framework.testing import make_step_context
from ddrl_framework.types import Gaussian
from tests.conftest import build

TINY_UNET = {"block_out_channels": (8, 16), "norm_num_groups": 4}


def test_log_prob_equals_torch_distributions_normal_with_per_sample_std():
    generator = torch.Generator().manual_seed(0)
    mean = torch.randn((3, 2, 4, 4), generator=generator)
    std = torch.tensor([0.3, 1.0, 2.5]).reshape(3, 1, 1, 1)
    x = mean + std * torch.randn(mean.shape, generator=generator)
    normal = torch.distributions.Normal(mean.double(), std.double().expand_as(mean))
    expected = normal.log_prob(x.double()).sum(dim=(1, 2, 3))  # float64: the reference
    assert torch.allclose(Gaussian(mean=mean, std=std).log_prob(x).double(), expected, rtol=1e-6, atol=1e-5)


def test_log_prob_is_float32_for_half_inputs():
    mean = torch.randn(2, 1, 4, 4).to(torch.bfloat16)
    gaussian = Gaussian(mean=mean, std=torch.tensor(0.5))
    assert gaussian.log_prob(mean).dtype == torch.float32


def test_deterministic_transition_has_no_density():
    with pytest.raises(ValueError, match="eta > 0"):
        Gaussian(mean=torch.zeros(1, 3), std=torch.tensor(0.0)).log_prob(torch.zeros(1, 3))


@pytest.mark.parametrize("std_p,std_q", [(0.5, 0.5), (0.4, 0.7)])
def test_gaussian_kl_equals_a_monte_carlo_estimate(std_p, std_q):
    generator = torch.Generator().manual_seed(0)
    p = Gaussian(mean=torch.randn(2, 1, 3, 3, generator=generator), std=torch.tensor(std_p))
    q = Gaussian(mean=p.mean + 0.3 * torch.randn(2, 1, 3, 3, generator=generator), std=torch.tensor(std_q))
    samples = [p.sample(generator) for _ in range(20_000)]
    estimate = torch.stack([p.log_prob(x) - q.log_prob(x) for x in samples]).mean(0)
    assert torch.allclose(p.kl(q), estimate, rtol=0.03, atol=0.05)


def test_equal_std_kl_is_the_scaled_squared_mean_distance():
    p = Gaussian(mean=torch.randn(4, 1, 2, 2), std=torch.tensor(0.2))
    q = Gaussian(mean=torch.randn(4, 1, 2, 2), std=torch.tensor(0.2))
    expected = (p.mean - q.mean).square().flatten(1).sum(1) / (2 * 0.2**2)
    assert torch.allclose(p.kl(q), expected, rtol=1e-5)


def test_reverse_kl_term_equals_beta_times_a_monte_carlo_kl():
    policy = build("policy", "unet2d", **TINY_UNET)
    reference = build("policy", "unet2d", seed=1, **TINY_UNET).reference()
    sampler = build("sampler", "ddim-sde", denoising_steps=4)
    context = make_step_context(policy, sampler, step=2, reference=reference)
    beta = 0.3
    term = build("regularizer", "reverse-kl", beta=beta).loss(context)["loss_reverse_kl"]
    p, q = context.transition, context.reference_transition
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        estimate = torch.stack([p.log_prob(x) - q.log_prob(x)
                                for x in (p.sample(generator) for _ in range(4_000))]).mean()
    assert term.item() > 0
    assert math.isclose(term.item(), beta * estimate.item(), rel_tol=0.05)


def _diffusers_ddim(spacing, clip, prediction_type="epsilon"):
    scheduler = DDIMScheduler(beta_schedule="squaredcos_cap_v2", clip_sample=clip,
                              set_alpha_to_one=False, timestep_spacing=spacing,
                              prediction_type=prediction_type)
    scheduler.set_timesteps(6)
    return scheduler


@pytest.mark.parametrize("spacing", ["trailing", "leading"])
@pytest.mark.parametrize("clip", [True, False])
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_zero_noise_step_equals_diffusers_ddim_scheduler_step(spacing, clip, prediction_type):
    policy = build("policy", "unet2d", prediction_type=prediction_type, **TINY_UNET)
    sampler = build("sampler", "ddim-sde", denoising_steps=6, eta=0.0, timestep_spacing=spacing, clip_sample=clip)
    scheduler = _diffusers_ddim(spacing, clip, prediction_type)
    assert torch.equal(sampler.coefficients(policy).timesteps, scheduler.timesteps)
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for k, t in enumerate(scheduler.timesteps):
            ours = sampler.transition(policy, x, k, None)
            theirs = scheduler.step(policy.predict(x, t, None), t, x, eta=0.0).prev_sample
            assert float(ours.std) == 0.0
            assert torch.allclose(ours.mean, theirs, atol=1e-5), f"step {k}"
            x = theirs


def test_stochastic_step_equals_diffusers_step_with_the_same_noise():
    policy = build("policy", "unet2d", **TINY_UNET)
    sampler = build("sampler", "ddim-sde", denoising_steps=6, eta=0.8)
    scheduler = _diffusers_ddim("trailing", True)
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for k, t in enumerate(scheduler.timesteps):
            z = torch.randn_like(x)
            ours = sampler.transition(policy, x, k, None)
            theirs = scheduler.step(policy.predict(x, t, None), t, x, eta=0.8, variance_noise=z).prev_sample
            assert torch.allclose(ours.mean + ours.std * z, theirs, atol=1e-5), f"step {k}"
            x = theirs


@pytest.mark.parametrize("noise_mode", ["rollout", "fresh"])
def test_data_term_in_the_papers_unit_equals_the_pretraining_loss_on_the_same_inputs(noise_mode):
    """beta * L_diffusion, with L computed independently from diffusers' DDPMScheduler.add_noise."""
    policy = build("policy", "unet2d", **TINY_UNET)
    sampler = build("sampler", "ddim-sde", denoising_steps=4)
    context = make_step_context(policy, sampler, groups=3, group_size=2, step=1)
    beta = 0.05
    regularizer = build("regularizer", "forward-kl-data", beta=beta, noise=noise_mode, unit="paper")
    state = context.generator.get_state()
    term = regularizer.loss(context)["loss_forward_kl_data"]
    x0 = policy.encode(context.data.x0)
    if noise_mode == "rollout":
        noise = context.trajectory.initial_noise[::2]
        t = context.trajectory.timesteps[1].expand(3)
    else:  # the same draws the plugin made from the same generator state
        context.generator.set_state(state)
        noise = torch.randn(x0.shape, generator=context.generator)
        t = torch.randint(0, 1000, (3,), generator=context.generator)
    reference = DDPMScheduler(beta_schedule="squaredcos_cap_v2")
    with torch.no_grad():
        x_t = reference.add_noise(x0, noise, t)
        expected = (policy.model(x_t, t).sample - noise).square().mean()
    assert torch.allclose(term, beta * expected, rtol=1e-5)


def test_data_term_only_on_the_first_trained_step_when_asked():
    policy, sampler = build("policy", "unet2d", **TINY_UNET), build("sampler", "ddim-sde", denoising_steps=4)
    context = make_step_context(policy, sampler, step=2)
    regularizer = build("regularizer", "forward-kl-data", every_step=False)
    assert regularizer.loss(context)["loss_forward_kl_data"] > 0
    import attrs
    later = attrs.evolve(context, is_first_trained_step=False)
    assert regularizer.loss(later)["loss_forward_kl_data"] == 0


def test_group_std_advantages_normalize_each_group_separately():
    rewards = torch.tensor([1.0, 2.0, 3.0, 10.0, 10.0, 40.0])
    advantages = group_advantages(rewards, group_size=3, eps=0.0)
    for group in advantages.reshape(2, 3):
        assert abs(group.mean()) < 1e-6 and abs(group.std(unbiased=False) - 1) < 1e-5


def test_raw_advantages_subtract_the_mean_of_the_others_in_the_group_and_clip():
    rewards = torch.tensor([0.0, 1.0, 2.0, 0.0, 0.0, 30.0])
    advantages = group_advantages(rewards, 3, normalization="raw", clip=50.0)
    others = [(1 + 2) / 2, (0 + 2) / 2, (0 + 1) / 2, 15.0, 15.0, 0.0]  # leave-one-out means
    assert torch.allclose(advantages, rewards - torch.tensor(others))
    assert group_advantages(rewards, 3, normalization="raw", clip=5.0)[3:].tolist() == [-5.0, -5.0, 5.0]


def test_raw_advantages_give_the_unbiased_gradient_of_the_expected_reward():
    """Monte-Carlo: for x ~ N(mu, 1) and r = x, d E[r] / d mu = 1. The score-function estimate
    ``mean(A * (x - mu))`` with the raw (leave-one-out) advantages has that mean; centering on a
    group mean that includes the sample itself would give (S - 1) / S = 0.75 at S = 4."""
    x = torch.randn(200_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    score = x  # d log N(x; mu, 1) / d mu at mu = 0
    estimate = (group_advantages(x, 4, normalization="raw", clip=1e9).double() * score).mean()
    centered = ((x.reshape(-1, 4) - x.reshape(-1, 4).mean(1, keepdim=True)).flatten() * score).mean()
    assert abs(estimate - 1.0) < 0.02 and abs(centered - 0.75) < 0.02


def test_neg_exp_exponentiates_then_clamps_as_the_official_code_does():
    """cosmos-rl's DDRL trainer: A <- -exp(-A), then clamp to [adv_clip_min, adv_clip_max]."""
    rewards = torch.tensor([0.0, 1.0, 2.0, 30.0])
    advantages = group_advantages(rewards, 4, normalization="raw", clip=5.0, transform="neg-exp")
    centered = rewards - rewards.mean()  # [-8.25, -7.25, -6.25, 21.75]: no clip before the exp
    assert torch.allclose(advantages, (-torch.exp(-centered)).clamp(-5.0, 5.0))
    assert advantages.min() == -5.0  # clamping first would have let A reach -exp(5) = -148
    assert advantages.max() < 0 and advantages.max() > -1e-9


def test_exp_tilt_with_a_fixed_normalizer_uses_it_for_every_group():
    rewards = torch.tensor([0.0, 1.0, 2.0, -1.0, 5.0, 6.0])
    temperature, z = 2.0, 1.5
    advantages = group_advantages(rewards, 3, transform="exp-tilt", temperature=temperature, clip=50,
                                  log_normalizer=z)
    assert torch.allclose(advantages, -torch.exp(-(rewards - z) / temperature))
    # unlike the per-group Z, a shift of the rewards now changes the advantages
    shifted = group_advantages(rewards + 3.0, 3, transform="exp-tilt", temperature=temperature, clip=50,
                               log_normalizer=z)
    assert not torch.allclose(shifted, advantages)


def test_the_tilt_normalizer_is_t_log_mean_exp():
    rewards = torch.tensor([-3.0, -1.0, 0.5, 2.0])
    for temperature in (0.5, 1.0, 4.0):
        expected = temperature * math.log(sum(math.exp(float(r) / temperature) for r in rewards) / 4)
        assert abs(tilt_log_normalizer(rewards, temperature) - expected) < 1e-9


def test_exp_tilt_clamps_after_exponentiating():
    rewards = torch.tensor([-20.0, 0.0, 1.0])
    advantages = group_advantages(rewards, 3, transform="exp-tilt", clip=5.0, log_normalizer=0.0)
    assert torch.allclose(advantages, torch.tensor([-5.0, -1.0, -math.exp(-1.0)]))


def test_clipped_loss_stops_the_gradient_outside_the_trust_region():
    advantages = torch.tensor([1.0, 1.0, -1.0, -1.0])
    old = torch.zeros(4)
    new = torch.log(torch.tensor([1.5, 0.9, 0.5, 1.1])).requires_grad_()
    loss, stats = clipped_policy_loss(new, old, advantages, clip_range=0.2)
    loss.backward()
    # ratio 1.5 with A > 0 and ratio 0.5 with A < 0 are clipped: no gradient
    assert new.grad[0] == 0 and new.grad[2] == 0
    assert new.grad[1] != 0 and new.grad[3] != 0
    expected = torch.tensor([-1.2, -0.9, 0.8, 1.1]).mean()
    assert torch.allclose(loss, expected)
    assert stats["clip_fraction"] == 0.5


def test_exp_tilt_is_the_papers_transform_with_a_per_group_log_mean_exp():
    rewards = torch.tensor([0.0, 1.0, 2.0, -1.0, 5.0, 6.0])
    temperature = 2.0
    advantages = group_advantages(rewards, 3, transform="exp-tilt", temperature=temperature, clip=50)
    for group, values in zip(rewards.reshape(2, 3), advantages.reshape(2, 3)):
        z = temperature * torch.log(torch.exp(group / temperature).mean())
        assert torch.allclose(values, -torch.exp(-(group - z) / temperature), rtol=1e-5)
    # a shift of every reward in a group leaves its advantages unchanged (Z absorbs it)
    shifted = group_advantages(rewards + 3.0, 3, transform="exp-tilt", temperature=temperature, clip=50)
    assert torch.allclose(shifted, advantages, rtol=1e-5)


def test_per_reward_advantages_are_aggregated_by_weight(tiny_config):
    from ddrl_framework.evaluation.scoring import WeightedReward
    from ddrl_framework.running.loader import load_experiment
    from ddrl_framework.running.update import advantages

    config = tiny_config()
    text = config.read_text().replace('[[rewards]]\nname = "brightness"',
                                      '[[rewards]]\nname = "brightness"\nweight = 2.0\n\n'
                                      '[[rewards]]\nname = "jpeg-compressibility"\nweight = 0.5')
    config.write_text(text)
    values = {"brightness": torch.rand(8), "jpeg_compressibility": 1000 * torch.rand(8)}
    term = -torch.rand(8)

    def aggregated(aggregation, **extra):
        experiment = load_experiment(config, [f"train.reward_aggregation={aggregation}"])
        weighted = [WeightedReward(key=spec.name.replace("-", "_"), name=spec.name, weight=spec.weight, model=None)
                    for spec in experiment.rewards]
        return advantages(experiment.train, weighted, values, **extra)

    def of(r):
        return group_advantages(r, 4)

    summed = aggregated("sum")
    assert torch.allclose(summed, of(2.0 * values["brightness"] + 0.5 * values["jpeg_compressibility"]))
    each = aggregated("advantages")
    assert torch.allclose(each, 2.0 * of(values["brightness"]) + 0.5 * of(values["jpeg_compressibility"]))
    # a regularizer's reward term: added to the sum, or one more reward of weight 1
    with_term = aggregated("sum", reward_term=term)
    assert torch.allclose(with_term, of(2.0 * values["brightness"] + 0.5 * values["jpeg_compressibility"] + term))
    each_with_term = aggregated("advantages", reward_term=term)
    assert torch.allclose(each_with_term, each + of(term))


def test_ddim_sde_clamps_x0_as_the_backbones_own_sampling_does():
    """``clip_sample`` unset: clamp where the backbone's forward process says (pixel DDPMs, as
    DDIMScheduler's default), never on SD's latents, whose pipeline samples unclamped."""
    sampler = build("sampler", "ddim-sde", denoising_steps=4)
    sd = build("policy", "stable-diffusion")
    assert sd.pipeline.scheduler.config.clip_sample is False and sampler.clips(sd) is False
    assert sampler.clips(build("policy", "unet2d", **TINY_UNET)) is True
    assert build("sampler", "ddim-sde", clip_sample=False).clips(build("policy", "unet2d", **TINY_UNET)) is False


def test_the_scheduler_match_catches_a_clamp_the_backbone_does_not_do():
    """The zero-noise step is held against the backbone's scheduler (its forward process's
    clamp), not the sampler's own flag: a sampler told to clamp differently no longer matches
    once the clamp binds."""
    policy = build("policy", "unet2d", **TINY_UNET)
    x = 3 * torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))  # x0_hat beyond [-1, 1]
    with torch.no_grad():
        for clip, matches in ((None, True), (False, False)):
            sampler = build("sampler", "ddim-sde", denoising_steps=6, eta=0.0, clip_sample=clip)
            ours = sampler.transition(policy, x, 4, None).mean
            assert torch.allclose(ours, sampler.scheduler_step(policy, x, 4, None), atol=1e-5) is matches
