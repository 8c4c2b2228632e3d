"""The Sampler contract suite: the rollout's record, its reproducibility (from a generator and
from the ``NoiseStream`` a rollout gets under torchrun), ratio == 1 on policy,
log-probs against ``torch.distributions``, gradients, trainability, and zero noise against the
scheduler the sampler names (docs/concepts.md, "Sampler")."""

from __future__ import annotations

import pytest
import torch

from ddrl_framework.kit.pipeline_fidelity import judged
from ddrl_framework.kit.role_outputs import on_policy_ratio_gap
from ddrl_framework.kit.scheduler_match import names_a_scheduler, scheduler_gap
from ddrl_framework.protocols import (
    FollowsPipelineSchedule,
    HasDeterministicVariant,
    Policy,
    Sampler,
    WrapsPipeline,
)
from ddrl_framework.testing.fakes import FakePolicy, fake_batch, pixel_shape
from ddrl_framework.testing.messages import (
    brief,
    first_line,
    max_gap,
    nonzero_count,
    protocol_message,
    shape,
)
from ddrl_framework.testing.pipeline_fidelity import check_matches_pipeline
from ddrl_framework.types import NoiseStream


class SamplerContract:
    """Define ``make_sampler()``; override ``make_policy()`` to test against another backbone.

    A sampler that names a reference scheduler (``deterministic()`` and ``scheduler_step(policy,
    x_k, k, cond)``) is checked against it at zero noise.
    """

    batch_size = 4

    def make_sampler(self) -> Sampler:
        raise NotImplementedError

    def make_policy(self) -> Policy:
        return FakePolicy()

    def make_setup(self):
        """``(policy, sampler, cond, noise)`` for ``batch_size`` samples."""
        policy, sampler = self.make_policy(), self.make_sampler()
        batch = fake_batch(self.batch_size, pixel_shape(policy))
        cond = policy.encode_conditions(batch)
        noise = torch.randn((self.batch_size, *policy.sample_shape),
                            generator=torch.Generator().manual_seed(0))
        return policy, sampler, cond, noise

    @pytest.fixture
    def setup(self):
        return self.make_setup()

    def _rollout(self, setup, seed=1):
        policy, sampler, cond, noise = setup
        return sampler.rollout(policy, cond, noise, torch.Generator().manual_seed(seed))

    def test_implements_protocol(self, setup):
        assert isinstance(setup[1], Sampler), protocol_message(setup[1], Sampler)

    def test_rollout_records_every_step(self, setup):
        policy, sampler, _, noise = setup
        trajectory = self._rollout(setup)
        k, b, sample = sampler.num_steps, self.batch_size, tuple(policy.sample_shape)
        for field, expected in [("latents", (k + 1, b, *sample)), ("means", (k, b, *sample)),
                                ("log_probs", (k, b)), ("timesteps", (k,))]:
            got = getattr(trajectory, field)
            assert got.shape == expected, (
                f"trajectory.{field} has shape {shape(got)}; expected {shape(expected)} "
                f"(K = {k} steps, B = {b})")
        assert trajectory.log_probs.dtype == torch.float32, (
            f"trajectory.log_probs is {trajectory.log_probs.dtype}; expected torch.float32")
        assert torch.equal(trajectory.latents[0], noise), "trajectory.latents[0] is not the initial noise"
        assert torch.isfinite(trajectory.log_probs).all(), (
            "trajectory.log_probs has non-finite values (a deterministic step?): "
            f"{brief(trajectory.log_probs, 8)}")

    def test_rollout_is_reproducible_from_its_generator(self, setup):
        a, b, c = self._rollout(setup, 1), self._rollout(setup, 1), self._rollout(setup, 2)
        assert torch.equal(a.latents, b.latents), (
            f"two rollouts from the same generator seed differ by up to {max_gap(a.latents, b.latents):.3g}; "
            "expected equal")
        assert not torch.equal(a.latents, c.latents), "rollouts from generator seeds 1 and 2 are equal"

    def _stream_rollout(self, setup, seed):
        """A rollout whose step noise comes as under torchrun: a ``NoiseStream`` of ``num_steps`` steps."""
        policy, sampler, cond, noise = setup
        steps = torch.randn((sampler.num_steps, *noise.shape), generator=torch.Generator().manual_seed(seed))
        try:
            return sampler.rollout(policy, cond, noise, NoiseStream(steps.to(noise.device)))
        except Exception as error:
            raise AssertionError(
                f"rollout(policy, cond, noise, NoiseStream) raised {first_line(error)}; under "
                "torchrun the step noise comes as a NoiseStream, not a torch.Generator: draw it with "
                "Gaussian.sample(generator) or ddrl_framework.types.standard_normal(like, generator)"
            ) from error

    def test_rollout_is_reproducible_from_a_noise_stream(self, setup):
        a, b, c = (self._stream_rollout(setup, seed) for seed in (1, 1, 2))
        assert torch.equal(a.latents, b.latents), (
            f"two rollouts from NoiseStreams of the same seed differ by up to "
            f"{max_gap(a.latents, b.latents):.3g}; expected equal")
        assert not torch.equal(a.latents, c.latents), (
            "rollouts from NoiseStreams of seeds 1 and 2 are equal: the rollout ignores the stream")

    def test_ratio_is_exactly_one_on_policy(self, setup):
        """The training pass recomputes the rollout's log-probs bit for bit (ratio == 1)."""
        policy, sampler, cond, _ = setup
        gap = on_policy_ratio_gap(sampler, policy, self._rollout(setup), cond, range(sampler.num_steps))
        assert not gap.without_gradient, (
            f"step(s) {list(gap.without_gradient)}: transition().log_prob carries no gradient")
        assert gap.ok, gap.message()

    def test_log_prob_matches_torch_distributions(self, setup):
        policy, sampler, cond, _ = setup
        trajectory = self._rollout(setup)
        k = sampler.num_steps // 2
        with torch.no_grad():
            step = sampler.transition(policy, trajectory.latents[k], k, cond)
            normal = torch.distributions.Normal(step.mean.double(), step.std.double().expand_as(step.mean))
            expected = normal.log_prob(trajectory.latents[k + 1].double()).flatten(1).sum(1)
        got = trajectory.log_probs[k].double()
        assert torch.allclose(got, expected, rtol=1e-5, atol=1e-3), (
            f"step {k}: log_probs {brief(got)}; torch.distributions.Normal gives {brief(expected)}")

    def test_transition_is_differentiable_in_the_policy(self, setup):
        policy, sampler, cond, _ = setup
        trajectory = self._rollout(setup)
        k = sampler.num_steps // 2
        step = sampler.transition(policy, trajectory.latents[k], k, cond)
        step.mean.square().sum().backward()
        reached, total = nonzero_count(p.grad for p in policy.trainable_parameters())
        assert reached > 0, (
            f"step {k}: the transition's mean has zero gradient on all {total} trainable tensors")

    def test_check_trainable_accepts_the_stochastic_steps(self, setup):
        policy, sampler, _, _ = setup
        log_probs = self._rollout(setup).log_probs
        steps = [k for k in range(sampler.num_steps) if bool(torch.isfinite(log_probs[k]).all())]
        try:
            sampler.check_trainable(policy, steps)
        except ValueError as error:
            raise AssertionError(
                f"check_trainable(policy, {steps}) refused the stochastic steps: {error}") from error

    def test_check_trainable_refuses_the_deterministic_variant(self, setup):
        policy, sampler, cond, noise = setup
        if not isinstance(sampler, HasDeterministicVariant):
            pytest.skip("the sampler has no deterministic() variant")
        ode, steps = sampler.deterministic(), list(range(sampler.num_steps))
        step = ode.transition(policy, noise, 0, cond)
        assert step.is_deterministic, f"deterministic().transition() has std {brief(step.std)}; expected 0"
        with pytest.raises(ValueError) as raised:
            ode.check_trainable(policy, steps)
            raise AssertionError(
                f"deterministic().check_trainable(policy, {steps}) accepted steps whose std is 0; "
                "expected a ValueError naming the option that makes them stochastic")
        assert str(raised.value), "check_trainable raised a ValueError without a message"

    def test_zero_noise_equals_the_scheduler_step(self, setup):
        policy, sampler, cond, _ = setup
        if not names_a_scheduler(sampler):
            pytest.skip("the sampler names no reference scheduler (deterministic() and scheduler_step())")
        gap = scheduler_gap(sampler, policy, self._rollout(setup).latents, cond)
        assert gap.ok, (f"step {gap.worst_step}: deterministic().transition().mean is {gap.worst:.3g} from "
                        f"scheduler_step(); expected <= {gap.tolerance:.1e} (1e-4 x max(1, {gap.scale:.3g}))")

    def test_zero_noise_rollout_equals_the_pipelines_own_sampling(self, setup):
        """On a policy that wraps a diffusers pipeline: the whole zero-noise rollout against
        ``pipeline(latents=..., output_type="latent")`` (kit.pipeline_fidelity)."""
        policy, sampler, _, _ = setup
        if not isinstance(policy, WrapsPipeline):
            pytest.skip("the policy wraps no diffusers pipeline")
        if not isinstance(sampler, FollowsPipelineSchedule):
            pytest.skip("the sampler cannot run on a pipeline's schedule (no on_pipeline_schedule)")
        if not judged(policy):
            pytest.skip("the policy computes in bf16, where the fidelity check cannot tell rounding from a bug")
        check_matches_pipeline(policy, sampler)
