"""The Policy contract suite: shapes, the forward process, the codec, the reference view and its
named weights, persistence. Works at any ``batch_size``."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from ddrl_framework.protocols import Policy
from ddrl_framework.testing.fakes import fake_batch, pixel_shape
from ddrl_framework.testing.messages import brief, max_gap, name_diff, nonzero_count, protocol_message, shape
from ddrl_framework.types import DataBatch


def spread_timesteps(policy: Policy, n: int) -> Tensor:
    """``n`` timesteps spread over the forward process's range ``[0, T)``: from ``T / 100`` to
    ``99 T / 100`` (10, 500, 990 for three of 1000), ``T / 2`` for one. Integers where the process
    draws integers (DDPM), floats ``sigma * T`` where it draws floats (flow matching)."""
    process = policy.forward_process
    total = int(getattr(process, "num_train_timesteps", 1000))
    fractions = torch.linspace(0.01, 0.99, n, dtype=torch.float64) if n > 1 else torch.full((1,), 0.5)
    t = fractions.double() * total
    drawn = torch.zeros(1, dtype=torch.long)
    if hasattr(process, "random_timesteps"):
        drawn = process.random_timesteps(1, torch.Generator().manual_seed(0), "cpu")
    if drawn.dtype.is_floating_point:
        return t.to(drawn.dtype)
    return t.round().long().clamp(0, total - 1)


class PolicyContract:
    """Define ``make_policy()`` and ``load_policy(directory)`` (build from ``save_pretrained``).

    A latent policy has a ``pixel_shape`` attribute (what ``decode`` returns for one sample); a
    policy whose ``encode``/``decode`` round trip is not the identity (a VAE) sets
    ``lossless_codec = False``. ``batch_size``: how many samples each check uses (any number).

    ``decodes_to_unit_range``: True (the protocol's rule) checks that ``decode`` returns pixels in
    ``[0, 1]``. A suite for a policy whose samples are not images sets it False, and only then is
    the range check left out (shape and round trip are still checked): e.g. the ``mlp-denoiser``
    of the solvable benchmark, whose samples are points of R^d and whose ``decode`` is the identity.
    """

    batch_size = 3
    decodes_to_unit_range = True

    def make_policy(self) -> Policy:
        raise NotImplementedError

    def load_policy(self, directory) -> Policy:
        raise NotImplementedError

    def make_batch(self, policy: Policy) -> DataBatch:
        """Prompts and pixels of ``pixel_shape``."""
        return fake_batch(self.batch_size, pixel_shape(policy))

    def make_timesteps(self, policy: Policy, n: int) -> Tensor:
        """``n`` timesteps for the checks (default: :func:`spread_timesteps`)."""
        return spread_timesteps(policy, n)

    @pytest.fixture
    def policy(self) -> Policy:
        return self.make_policy()

    def _noisy(self, policy):
        x0 = policy.encode(self.make_batch(policy).x0)
        noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0)).to(x0)
        return x0, noise, self.make_timesteps(policy, x0.shape[0])

    def test_implements_protocol(self, policy):
        assert isinstance(policy, Policy), protocol_message(policy, Policy)

    def test_predict_keeps_the_latent_shape(self, policy):
        x0, noise, t = self._noisy(policy)
        cond = policy.encode_conditions(self.make_batch(policy))
        out = policy.predict(policy.add_noise(x0, noise, t), t, cond)
        assert out.shape == x0.shape, (f"predict() returned shape {shape(out)} for x_t of shape {shape(x0)} "
                                       f"at timesteps {t.tolist()}; expected the same shape")
        assert torch.isfinite(out).all(), f"predict() returned non-finite values: {brief(out)}"

    def test_decode_is_in_unit_range_and_encode_inverts_it(self, policy):
        latents = torch.randn((4, *policy.sample_shape), generator=torch.Generator().manual_seed(1)) * 3
        pixels = policy.decode(latents)
        expected = (4, *pixel_shape(policy))
        assert pixels.shape == expected, (
            f"decode() returned shape {shape(pixels)}; expected {shape(expected)}")
        low, high = float(pixels.min()), float(pixels.max())
        if self.decodes_to_unit_range:
            assert low >= 0 and high <= 1, (f"decode() returned pixels in [{low:.4g}, {high:.4g}]; expected "
                                            "[0, 1] (a suite for a policy of points, not images, sets "
                                            "decodes_to_unit_range = False)")
        inside = torch.rand(pixels.shape, generator=torch.Generator().manual_seed(2))
        encoded = policy.encode(inside)
        assert encoded.shape == latents.shape, (
            f"encode() returned shape {shape(encoded)} for pixels {shape(inside)}; "
            f"expected the latent shape {shape(latents)}")
        if getattr(policy, "lossless_codec", True):
            gap = max_gap(policy.decode(encoded), inside)
            assert gap <= 0.05, (f"decode(encode(pixels)) is off by up to {gap:.3g}; expected <= 0.05 "
                                 "(set lossless_codec = False for a lossy codec such as a VAE)")

    def test_diffusion_loss_is_a_differentiable_scalar(self, policy):
        batch = self.make_batch(policy)
        loss = policy.diffusion_loss(policy.encode(batch.x0), policy.encode_conditions(batch))
        assert loss.ndim == 0, f"diffusion_loss() returned shape {shape(loss)}; expected a scalar []"
        assert torch.isfinite(loss), f"diffusion_loss() returned {brief(loss)}; expected a finite value"
        assert loss.requires_grad, "diffusion_loss() carries no gradient (requires_grad is False)"
        loss.backward()
        reached, total = nonzero_count(p.grad for p in policy.trainable_parameters())
        assert reached > 0, f"diffusion_loss() gradients are zero on all {total} trainable tensors"

    def test_diffusion_loss_is_the_regression_to_the_training_target(self, policy):
        batch = self.make_batch(policy)
        x0, noise, t = self._noisy(policy)
        cond = policy.encode_conditions(batch)
        unguided = cond.unguided() if hasattr(cond, "unguided") else cond  # the loss has no guidance
        with torch.no_grad():
            expected = (policy.predict(policy.add_noise(x0, noise, t), t, unguided)
                        - policy.training_target(x0, noise, t)).square().mean()
            loss = policy.diffusion_loss(x0, cond, noise=noise, t=t)
        assert torch.allclose(loss, expected, rtol=1e-5, atol=1e-7), (
            f"diffusion_loss(noise, t) = {float(loss):.6g}; expected mean((predict(add_noise(x0, noise, t)) "
            f"- training_target)^2) = {float(expected):.6g}")

    def test_reference_is_frozen_and_ignores_updates(self, policy):
        reference = policy.reference()
        trainable = [p for p in reference.trainable_parameters() if p.requires_grad]
        assert not trainable, (
            f"reference().trainable_parameters() has {len(trainable)} tensors that require grad")
        x0, noise, t = self._noisy(policy)
        x_t, cond = policy.add_noise(x0, noise, t), policy.encode_conditions(self.make_batch(policy))
        with torch.no_grad():
            before = reference.predict(x_t, t, cond).clone()
            for p in policy.trainable_parameters():
                p.add_(0.1)
            after = reference.predict(x_t, t, cond)
            assert torch.equal(after, before), (
                f"the reference's prediction moved by up to {max_gap(after, before):.3g} "
                "when the policy's weights moved")
            assert not torch.equal(policy.predict(x_t, t, cond), before), (
                "the policy's prediction did not change when its trainable weights moved by 0.1")

    def test_named_trainable_parameters_match_trainable_parameters(self, policy):
        named, params = list(policy.named_trainable_parameters()), list(policy.trainable_parameters())
        names = [name for name, _ in named]
        assert named, "named_trainable_parameters() yields nothing; expected the trainable weights by name"
        assert all(isinstance(name, str) for name in names), f"names {names[:3]}...; expected strings"
        assert len(set(names)) == len(names), f"named_trainable_parameters() repeats names: {names}"
        assert len(named) == len(params), (
            f"named_trainable_parameters() yields {len(named)} tensors, trainable_parameters() "
            f"{len(params)}; expected one name per tensor")
        for i, ((name, value), p) in enumerate(zip(named, params)):
            assert value is p, (f"entry {i} '{name}' {shape(value)} is not trainable_parameters()[{i}] "
                                f"{shape(p)}; expected the same tensors in the same order")

    def test_reference_names_the_same_weights_frozen_and_unchanged(self, policy):
        before = {name: p.detach().clone() for name, p in policy.named_trainable_parameters()}
        reference = dict(_checked_reference_weights(policy, before))
        with torch.no_grad():
            for p in policy.trainable_parameters():
                p.add_(0.1)
        for name, value in reference.items():
            gap = max_gap(value, before[name])
            assert gap == 0, f"the reference's '{name}' moved by {gap:.3g} when the policy's weights moved"
        moved = dict(policy.named_trainable_parameters())
        assert any(max_gap(moved[name], before[name]) > 0 for name in before), (
            "the policy's weights did not move")

    def test_save_pretrained_loads_back_the_same_network(self, policy, tmp_path):
        x0, noise, t = self._noisy(policy)
        cond = policy.encode_conditions(self.make_batch(policy))
        policy.save_pretrained(tmp_path / "saved")
        loaded = self.load_policy(tmp_path / "saved")
        with torch.no_grad():
            x_t = policy.add_noise(x0, noise, t)
            gap = max_gap(loaded.predict(x_t, t, cond), policy.predict(x_t, t, cond))
        assert gap <= 1e-6, (
            f"the policy loaded from save_pretrained() predicts up to {gap:.3g} away; expected <= 1e-6")

    def test_trainable_state_round_trips(self, policy):
        state = policy.trainable_state_dict()
        with torch.no_grad():
            for p in policy.trainable_parameters():
                p.zero_()
        policy.load_trainable_state_dict(state)
        again = policy.trainable_state_dict()
        assert list(again) == list(state), (
            f"trainable_state_dict() keys changed: {name_diff(list(again), list(state))}")
        for key in state:
            assert torch.equal(state[key], again[key]), (
                f"'{key}' is {max_gap(again[key], state[key]):.3g} away after "
                "load_trainable_state_dict(); expected equal")


def _checked_reference_weights(policy: Policy, before: dict[str, Tensor]) -> list[tuple[str, Tensor]]:
    """``policy.reference().named_trainable_parameters()``, checked against the policy's weights
    ``before`` any update: the same names in the same order, shapes, frozen, equal values."""
    reference = [(name, value.detach()) for name, value in policy.reference().named_trainable_parameters()]
    names = [name for name, _ in reference]
    assert names == list(before), (
        f"reference().named_trainable_parameters() yields {len(names)} names, "
        f"{name_diff(names, list(before))}; expected the policy's {len(before)} names in the same order")
    for (name, value), (_, frozen) in zip(reference, policy.reference().named_trainable_parameters()):
        assert value.shape == before[name].shape, (f"the reference's '{name}' has shape {shape(value)}; "
                                                   f"expected the policy's {shape(before[name])}")
        assert not frozen.requires_grad, f"the reference's '{name}' requires grad; expected a frozen value"
        gap = max_gap(value, before[name])
        assert gap == 0, f"the reference's '{name}' differs from the policy's by {gap:.3g} before any update"
    return reference
