"""Contract suites: one pytest class per protocol. Subclass one and define its ``make_*`` method.

Every built-in plugin passes these; a third-party plugin can run the same checks on itself.
"""

from __future__ import annotations

import math

import pytest
import torch

from ddrl_framework.protocols import (
    DataSource,
    Metric,
    Policy,
    Regularizer,
    RewardModel,
    Sampler,
)
from ddrl_framework.testing.fakes import (
    FakePolicy,
    FakeSampler,
    fake_batch,
    make_eval_context,
    make_step_context,
    pixel_shape,
)
from ddrl_framework.types import DataBatch


class PolicyContract:
    """Define ``make_policy()`` and ``load_policy(directory)`` (build from ``save_pretrained``).

    A latent policy has a ``pixel_shape`` attribute (what ``decode`` returns for one sample); a
    policy whose ``encode``/``decode`` round trip is not the identity (a VAE) sets
    ``lossless_codec = False``.
    """

    batch_size = 3

    def make_policy(self) -> Policy:
        raise NotImplementedError

    def load_policy(self, directory) -> Policy:
        raise NotImplementedError

    def make_batch(self, policy: Policy) -> DataBatch:
        """Prompts and pixels of ``pixel_shape``."""
        return fake_batch(self.batch_size, pixel_shape(policy))

    @pytest.fixture
    def policy(self) -> Policy:
        return self.make_policy()

    def _noisy(self, policy):
        x0 = policy.encode(self.make_batch(policy).x0)
        noise = torch.randn_like(x0)
        t = torch.tensor([10, 500, 990])[: x0.shape[0]]
        return x0, noise, t

    def test_implements_protocol(self, policy):
        assert isinstance(policy, Policy)

    def test_predict_keeps_the_latent_shape(self, policy):
        x0, noise, t = self._noisy(policy)
        cond = policy.encode_conditions(self.make_batch(policy))
        out = policy.predict(policy.add_noise(x0, noise, t), t, cond)
        assert out.shape == x0.shape and torch.isfinite(out).all()

    def test_decode_is_in_unit_range_and_encode_inverts_it(self, policy):
        latents = torch.randn((4, *policy.sample_shape)) * 3
        pixels = policy.decode(latents)
        assert pixels.min() >= 0 and pixels.max() <= 1
        assert pixels.shape == (4, *pixel_shape(policy))
        inside = torch.rand_like(pixels)
        assert policy.encode(inside).shape == latents.shape
        if getattr(policy, "lossless_codec", True):
            assert torch.allclose(policy.decode(policy.encode(inside)), inside, atol=0.05)

    def test_diffusion_loss_is_a_differentiable_scalar(self, policy):
        batch = self.make_batch(policy)
        loss = policy.diffusion_loss(policy.encode(batch.x0), policy.encode_conditions(batch))
        assert loss.ndim == 0 and torch.isfinite(loss)
        loss.backward()
        grads = [p.grad for p in policy.trainable_parameters()]
        assert any(g is not None and g.abs().sum() > 0 for g in grads)

    def test_diffusion_loss_is_the_regression_to_the_training_target(self, policy):
        batch = self.make_batch(policy)
        x0, noise, t = self._noisy(policy)
        cond = policy.encode_conditions(batch)
        unguided = cond.unguided() if hasattr(cond, "unguided") else cond  # the loss has no guidance
        with torch.no_grad():
            expected = (policy.predict(policy.add_noise(x0, noise, t), t, unguided)
                        - policy.training_target(x0, noise, t)).square().mean()
            loss = policy.diffusion_loss(x0, cond, noise=noise, t=t)
        assert torch.allclose(loss, expected, rtol=1e-5, atol=1e-7)

    def test_reference_is_frozen_and_ignores_updates(self, policy):
        reference = policy.reference()
        assert not any(p.requires_grad for p in reference.trainable_parameters())
        x0, noise, t = self._noisy(policy)
        x_t, cond = policy.add_noise(x0, noise, t), policy.encode_conditions(self.make_batch(policy))
        with torch.no_grad():
            before = reference.predict(x_t, t, cond).clone()
            for p in policy.trainable_parameters():
                p.add_(0.1)
            assert torch.equal(reference.predict(x_t, t, cond), before)
            assert not torch.equal(policy.predict(x_t, t, cond), before)

    def test_save_pretrained_loads_back_the_same_network(self, policy, tmp_path):
        x0, noise, t = self._noisy(policy)
        cond = policy.encode_conditions(self.make_batch(policy))
        policy.save_pretrained(tmp_path / "saved")
        loaded = self.load_policy(tmp_path / "saved")
        with torch.no_grad():
            x_t = policy.add_noise(x0, noise, t)
            assert torch.allclose(loaded.predict(x_t, t, cond), policy.predict(x_t, t, cond), atol=1e-6)

    def test_trainable_state_round_trips(self, policy):
        state = policy.trainable_state_dict()
        with torch.no_grad():
            for p in policy.trainable_parameters():
                p.zero_()
        policy.load_trainable_state_dict(state)
        again = policy.trainable_state_dict()
        assert state.keys() == again.keys()
        assert all(torch.equal(state[k], again[k]) for k in state)


class SamplerContract:
    """Define ``make_sampler()``; override ``make_policy()`` to test against another backbone."""

    batch_size = 4

    def make_sampler(self) -> Sampler:
        raise NotImplementedError

    def make_policy(self) -> Policy:
        return FakePolicy()

    @pytest.fixture
    def setup(self):
        policy, sampler = self.make_policy(), self.make_sampler()
        batch = fake_batch(self.batch_size, pixel_shape(policy))
        cond = policy.encode_conditions(batch)
        noise = torch.randn((self.batch_size, *policy.sample_shape),
                            generator=torch.Generator().manual_seed(0))
        return policy, sampler, cond, noise

    def _rollout(self, setup, seed=1):
        policy, sampler, cond, noise = setup
        return sampler.rollout(policy, cond, noise, torch.Generator().manual_seed(seed))

    def test_implements_protocol(self, setup):
        assert isinstance(setup[1], Sampler)

    def test_rollout_records_every_step(self, setup):
        policy, sampler, _, noise = setup
        trajectory = self._rollout(setup)
        k, b = sampler.num_steps, self.batch_size
        assert trajectory.latents.shape == (k + 1, b, *policy.sample_shape)
        assert trajectory.means.shape == (k, b, *policy.sample_shape)
        assert trajectory.log_probs.shape == (k, b) and trajectory.log_probs.dtype == torch.float32
        assert trajectory.timesteps.shape == (k,)
        assert torch.equal(trajectory.latents[0], noise)
        assert torch.isfinite(trajectory.log_probs).all()

    def test_rollout_is_reproducible_from_its_generator(self, setup):
        a, b, c = self._rollout(setup, 1), self._rollout(setup, 1), self._rollout(setup, 2)
        assert torch.equal(a.latents, b.latents)
        assert not torch.equal(a.latents, c.latents)

    def test_ratio_is_exactly_one_on_policy(self, setup):
        """The training pass recomputes the rollout's log-probs bit for bit (ratio == 1)."""
        policy, sampler, cond, _ = setup
        trajectory = self._rollout(setup)
        for k in range(sampler.num_steps):
            step = sampler.transition(policy, trajectory.latents[k], k, cond)
            log_prob = step.log_prob(trajectory.latents[k + 1])
            assert log_prob.requires_grad
            assert torch.equal(torch.exp(log_prob - trajectory.log_probs[k]), torch.ones_like(log_prob))

    def test_log_prob_matches_torch_distributions(self, setup):
        policy, sampler, cond, _ = setup
        trajectory = self._rollout(setup)
        k = sampler.num_steps // 2
        with torch.no_grad():
            step = sampler.transition(policy, trajectory.latents[k], k, cond)
            normal = torch.distributions.Normal(step.mean.double(), step.std.double().expand_as(step.mean))
            expected = normal.log_prob(trajectory.latents[k + 1].double()).flatten(1).sum(1)
        assert torch.allclose(trajectory.log_probs[k].double(), expected, rtol=1e-5, atol=1e-3)

    def test_transition_is_differentiable_in_the_policy(self, setup):
        policy, sampler, cond, _ = setup
        trajectory = self._rollout(setup)
        k = sampler.num_steps // 2
        step = sampler.transition(policy, trajectory.latents[k], k, cond)
        step.mean.square().sum().backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in policy.trainable_parameters())


class RewardModelContract:
    """Define ``make_reward()``; override ``make_samples()`` for other shapes (e.g. videos)."""

    def make_reward(self) -> RewardModel:
        raise NotImplementedError

    def make_samples(self) -> torch.Tensor:
        return torch.rand((4, 1, 8, 8), generator=torch.Generator().manual_seed(0))

    def _score(self, reward, samples):
        prompts = tuple(f"prompt {i}" for i in range(samples.shape[0]))
        return reward(samples, prompts, {})

    def test_implements_protocol(self):
        assert isinstance(self.make_reward(), RewardModel)

    def test_one_finite_float_per_sample(self):
        samples = self.make_samples()
        values = self._score(self.make_reward(), samples)
        assert values.shape == (samples.shape[0],)
        assert values.dtype.is_floating_point and torch.isfinite(values).all()

    def test_deterministic_and_not_constant(self):
        reward, samples = self.make_reward(), self.make_samples()
        assert torch.equal(self._score(reward, samples), self._score(reward, samples))
        flat = torch.zeros_like(samples)
        assert not torch.equal(self._score(reward, samples), self._score(reward, flat))


class _FakeBackbone:
    """A fast policy and sampler for contracts of the components that use them."""

    def make_policy(self) -> Policy:
        return FakePolicy()

    def make_sampler(self) -> Sampler:
        return FakeSampler()


class RegularizerContract(_FakeBackbone):
    """Define ``make_regularizer()``; override ``make_policy()`` / ``make_sampler()`` if needed."""

    def make_regularizer(self) -> Regularizer:
        raise NotImplementedError

    @pytest.fixture
    def context(self):
        return make_step_context(self.make_policy(), self.make_sampler(), step=1)

    def test_implements_protocol(self):
        regularizer = self.make_regularizer()
        assert isinstance(regularizer, Regularizer)
        assert isinstance(regularizer.needs_reference, bool) and isinstance(regularizer.needs_data, bool)

    def test_returns_its_named_finite_scalar(self, context):
        regularizer = self.make_regularizer()
        losses = regularizer.loss(context)
        assert f"loss_{regularizer.name}" in losses
        for key, value in losses.items():
            assert key.startswith("loss_") and value.ndim == 0 and math.isfinite(float(value.detach()))

    def test_gradients_reach_the_policy_when_the_loss_depends_on_it(self, context):
        losses = self.make_regularizer().loss(context)
        total = sum(losses.values())
        if total.requires_grad:
            total.backward()
            params = context.policy.trainable_parameters()
            assert any(p.grad is not None and torch.isfinite(p.grad).all() for p in params)


class DataSourceContract:
    """Define ``make_data_source()``."""

    batch_size = 5

    def make_data_source(self) -> DataSource:
        raise NotImplementedError

    def test_implements_protocol(self):
        assert isinstance(self.make_data_source(), DataSource)

    def test_batches_have_the_requested_size(self):
        loader = self.make_data_source().loader(self.batch_size, seed=0)
        for _ in range(3):
            batch = next(loader)
            assert isinstance(batch, DataBatch) and len(batch) == self.batch_size
            assert batch.x0 is None or batch.x0.shape[0] == self.batch_size

    def test_a_restored_loader_continues_at_the_same_batch(self):
        source = self.make_data_source()
        loader = source.loader(self.batch_size, seed=3)
        next(loader)
        state = loader.state_dict()
        expected = [next(loader).prompts for _ in range(3)]
        restored = source.loader(self.batch_size, seed=3)
        restored.load_state_dict(state)
        assert [next(restored).prompts for _ in range(3)] == expected

    def test_seed_changes_the_order(self):
        source = self.make_data_source()
        first = [next(source.loader(self.batch_size, seed=s)) for s in (0, 1)]
        a, b = first
        assert a.prompts != b.prompts or (a.x0 is not None and not torch.equal(a.x0, b.x0))

    def test_held_out_is_a_batch(self):
        held_out = self.make_data_source().held_out()
        assert isinstance(held_out, DataBatch) and len(held_out) > 0


class MetricContract(_FakeBackbone):
    """Define ``make_metric()``; override ``make_policy()`` / ``make_sampler()`` if needed."""

    def make_metric(self) -> Metric:
        raise NotImplementedError

    @pytest.fixture
    def context(self):
        return make_eval_context(self.make_policy(), self.make_sampler())

    def test_implements_protocol(self):
        metric = self.make_metric()
        assert isinstance(metric, Metric) and isinstance(metric.needs_reference, bool)

    def test_returns_named_finite_floats(self, context):
        values = self.make_metric()(context)
        assert values and all(isinstance(k, str) for k in values)
        assert all(math.isfinite(float(v)) for v in values.values())

    def test_is_deterministic(self, context):
        metric = self.make_metric()
        assert metric(context) == metric(context)
