"""The contract suites can fail: each check, run on a plugin broken the way users broke theirs,
fails with a message that says what it expected and what came back. (Issue 10: of nine ways to
break a reward or a regularizer, the old suites caught five.)"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import attrs
import pytest
import torch

from ddrl_framework.contexts import StepContext, UpdateContext
from ddrl_framework.kit.forward_process import FlowMatchingProcess
from ddrl_framework.metric_key import MetricKey
from ddrl_framework.testing import (
    FakePolicy,
    FakeSampler,
    MetricContract,
    PolicyContract,
    RegularizerContract,
    RewardModelContract,
    SamplerContract,
    make_step_context,
    make_update_context,
    spread_timesteps,
)
from ddrl_framework.types import Trajectory
from ddrl_plugins.samplers.ddim_sde import DdimSdeSampler
from tests.conftest import build


# --- regularizers ---------------------------------------------------------------------------


@attrs.frozen
class _Regularizer:
    """A regularizer whose loss is ``compute(context)``, declaring what the keywords say."""

    compute: object
    name: str = "broken"
    needs_reference: bool = False
    needs_reference_transition: bool = False
    needs_data: bool = False

    def loss(self, context: StepContext):
        return {f"loss_{self.name}": self.compute(context)}


def _kl(context):
    return context.transition.kl(context.reference_transition).mean()


BROKEN_REGULARIZERS = {
    "detached loss": (_Regularizer(lambda c: _kl(c).detach(), needs_reference_transition=True),
                      "test_gradients_are_not_zero_where_the_loss_is_not", "carries no gradient"),
    "constant loss": (_Regularizer(lambda c: torch.tensor(1.0)),
                      "test_gradients_are_not_zero_where_the_loss_is_not",
                      r"\['loss_broken'\] = 1 carries no gradient"),
    "loss from transition.mean.detach()": (
        _Regularizer(lambda c: c.transition.mean.detach().square().mean()),
        "test_gradients_are_not_zero_where_the_loss_is_not", r"transition\.mean\.detach\(\)"),
    "undeclared context.data": (
        _Regularizer(lambda c: c.policy.diffusion_loss(c.policy.encode(c.data.x0), None)),
        "test_returns_its_named_finite_scalar",
        r"raised AttributeError.*context\.data is None \(needs_data is False\).*declare what loss\(\) reads"),
    "undeclared reference transition": (
        _Regularizer(_kl, needs_reference=True),
        "test_gradients_are_not_zero_where_the_loss_is_not",
        r"context\.reference_transition is None \(needs_reference_transition is False\)"),
    "a vector, not a scalar": (_Regularizer(lambda c: c.transition.mean.flatten(1).mean(1)),
                               "test_returns_its_named_finite_scalar",
                               r"\['loss_broken'\] is shape \[6\] torch.float32; expected a dict of 'loss_\*' "
                               r"names to scalar float tensors"),
}


class _BrokenRegularizerSuite(RegularizerContract):
    regularizer = None

    def make_regularizer(self):
        return self.regularizer


@pytest.mark.parametrize("case", BROKEN_REGULARIZERS)
def test_the_regularizer_suite_fails_a_broken_regularizer(case):
    regularizer, check, message = BROKEN_REGULARIZERS[case]
    suite = _BrokenRegularizerSuite()
    suite.regularizer = regularizer
    with pytest.raises(AssertionError, match=message):
        getattr(suite, check)(suite.make_setup())


def test_the_regularizer_suite_names_the_key_it_expected():
    class Misnamed(_Regularizer):
        def loss(self, context):
            return {"loss": _kl(context)}

    suite = _BrokenRegularizerSuite()
    suite.regularizer = Misnamed(_kl, name="kl", needs_reference_transition=True)
    with pytest.raises(AssertionError, match=r"loss\(\) returned keys \['loss'\]; expected 'loss_kl'"):
        suite.test_returns_its_named_finite_scalar(suite.make_setup())


def test_the_suite_moves_the_policy_off_its_reference_so_a_kl_is_not_zero():
    suite = _BrokenRegularizerSuite()
    suite.regularizer = build("regularizer", "reverse-kl", beta=1.0)
    setup = suite.make_setup()
    loss = setup.regularizer.loss(suite.make_context(setup))["loss_reverse_kl"]
    assert float(loss.detach()) > 0 and loss.requires_grad
    unmoved = FakePolicy()
    context = make_step_context(unmoved, FakeSampler(), step=1, regularizer=setup.regularizer)
    unmoved_loss = setup.regularizer.loss(context)["loss_reverse_kl"]
    assert float(unmoved_loss.detach()) == 0  # what the old suite checked: nothing to differentiate


def test_the_step_context_carries_only_what_is_declared():
    policy, sampler = FakePolicy(), FakeSampler()
    bare = make_step_context(policy, sampler, regularizer=_Regularizer(_kl))
    assert bare.data is None and bare.reference is None and bare.reference_transition is None
    declared = _Regularizer(_kl, needs_reference=True, needs_reference_transition=True, needs_data=True)
    full = make_step_context(policy, sampler, regularizer=declared)
    assert full.data is not None and full.reference is policy.reference()
    assert full.reference_transition is not None
    update = make_update_context(policy, sampler, regularizer=_Regularizer(_kl, needs_data=True))
    assert isinstance(update, UpdateContext) and update.reference is None and update.data is not None


@attrs.frozen
class L2SP:
    """beta * ||theta - theta_ref||^2 once per optimizer step (L2-SP): the weights paired by name."""

    beta: float = 1.0
    detach: bool = False
    name = "l2sp"
    needs_reference = True
    needs_reference_transition = False
    needs_data = False

    def loss(self, context):
        return {"loss_l2sp": torch.zeros(())}

    def update_loss(self, context: UpdateContext):
        reference = dict(context.reference.named_trainable_parameters())
        total = sum((p - reference[n]).square().sum() for n, p in context.policy.named_trainable_parameters())
        return {"loss_l2sp_weights": self.beta * (total.detach() if self.detach else total)}


class TestL2SP(RegularizerContract):
    """A regularizer with ``update_loss`` passes the suite, which checks it too."""

    def make_regularizer(self):
        return L2SP()


def test_the_regularizer_suite_fails_a_detached_update_loss():
    suite = _BrokenRegularizerSuite()
    suite.regularizer = L2SP(detach=True)
    message = r"update_loss\(\)\['loss_l2sp_weights'\] = .* carries no gradient"
    with pytest.raises(AssertionError, match=message):
        suite.test_update_loss_is_named_finite_and_differentiable(suite.make_setup())


# --- rewards --------------------------------------------------------------------------------


class _BrokenRewardSuite(RewardModelContract):
    reward = None

    def make_reward(self):
        return self.reward


def _contrast_over_brightness(samples, prompts, metadata):  # 0 / 0 on an all-black image
    pixels = samples.float().flatten(1)
    return pixels.std(1) / pixels.mean(1)


def test_the_reward_suite_fails_a_reward_that_is_nan_on_black():
    suite = _BrokenRewardSuite()
    suite.reward = _contrast_over_brightness
    suite.test_one_finite_float_per_sample()  # random samples are fine
    suite.test_finite_on_edge_inputs("white")
    with pytest.raises(AssertionError, match=r"on an all-black batch .* returned \[4\] float32 \[nan"):
        suite.test_finite_on_edge_inputs("black")
    with pytest.raises(AssertionError, match=r"on an all-black batch .*expected finite values"):
        suite.test_deterministic_and_not_constant()  # torch.equal let NaN through before


def test_the_reward_suite_fails_a_reward_of_shape_b_by_one():
    suite = _BrokenRewardSuite()
    suite.reward = lambda samples, prompts, metadata: samples.flatten(1).mean(1, keepdim=True)
    message = (r"on random samples \[4, 1, 8, 8\]: the reward returned shape \[4, 1\] torch.float32; "
               r"expected one float per sample, shape \[4\] \(RewardModel protocol\)")
    with pytest.raises(AssertionError, match=message):
        suite.test_one_finite_float_per_sample()


def test_the_reward_suite_fails_a_constant_reward():
    suite = _BrokenRewardSuite()
    suite.reward = lambda samples, prompts, metadata: torch.zeros(samples.shape[0])
    with pytest.raises(AssertionError, match="alike; expected it to depend on the pixels"):
        suite.test_deterministic_and_not_constant()


# --- samplers -------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class _OffByOne(DdimSdeSampler):
    """At zero noise, step k uses step k + 1's coefficients: not the scheduler's step."""

    def transition(self, policy, x_k, k, cond):
        if self.eta == 0:
            k = min(k + 1, self.num_steps - 1)
        return DdimSdeSampler.transition(self, policy, x_k, k, cond)


@attrs.frozen(kw_only=True)
class _AcceptsAnything(DdimSdeSampler):
    def check_trainable(self, policy, steps):
        """Never refuses (wrong at eta = 0)."""


@attrs.frozen(kw_only=True)
class _RefusesEverything(DdimSdeSampler):
    def check_trainable(self, policy, steps):
        raise ValueError("no step is trainable")


@attrs.frozen(kw_only=True)
class _DrawsWithTorchRandn(DdimSdeSampler):
    """Draws its step noise with ``torch.randn(..., generator=generator)``: fine for a
    ``torch.Generator``, a TypeError for the ``NoiseStream`` a rollout gets under torchrun."""

    @torch.no_grad()
    def rollout(self, policy, cond, noise, generator=None):
        latents, means, log_probs = [noise], [], []
        for k in range(self.num_steps):
            step = self.transition(policy, latents[-1], k, cond)
            latents.append(step.mean + step.std * torch.randn(noise.shape, generator=generator))
            means.append(step.mean)
            log_probs.append(step.log_prob(latents[-1]))
        return Trajectory(latents=torch.stack(latents), timesteps=self.coefficients(policy).timesteps,
                          means=torch.stack(means), stds=torch.stack([torch.zeros(())] * self.num_steps),
                          log_probs=torch.stack(log_probs))


class _BrokenSamplerSuite(SamplerContract):
    sampler = None

    def make_sampler(self):
        return self.sampler


@pytest.mark.parametrize("sampler, check, message", [
    (_OffByOne(denoising_steps=4), "test_zero_noise_equals_the_scheduler_step",
     r"step 0: deterministic\(\)\.transition\(\)\.mean is .* from scheduler_step\(\); "
     r"expected <= 1\.\de-04 \(1e-4 x max\(1, "),
    (_AcceptsAnything(denoising_steps=4), "test_check_trainable_refuses_the_deterministic_variant",
     r"accepted steps whose std is 0; expected a ValueError"),
    (_RefusesEverything(denoising_steps=4), "test_check_trainable_accepts_the_stochastic_steps",
     r"check_trainable\(policy, \[0, 1, 2, 3\]\) refused the stochastic steps: no step is trainable"),
    (_DrawsWithTorchRandn(denoising_steps=4), "test_rollout_is_reproducible_from_a_noise_stream",
     r"rollout\(policy, cond, noise, NoiseStream\) raised TypeError: randn\(\) received .*; under torchrun "
     r"the step noise comes as a NoiseStream, not a torch\.Generator"),
])
def test_the_sampler_suite_fails_a_broken_sampler(sampler, check, message):
    suite = _BrokenSamplerSuite()
    suite.sampler = sampler
    setup = suite.make_setup()
    with pytest.raises(AssertionError, match=message):
        getattr(suite, check)(setup)


def test_the_sampler_suite_passes_the_same_sampler_unbroken():
    suite = _BrokenSamplerSuite()
    suite.sampler = DdimSdeSampler(denoising_steps=4)
    setup = suite.make_setup()
    suite.test_zero_noise_equals_the_scheduler_step(setup)
    suite.test_check_trainable_accepts_the_stochastic_steps(setup)
    suite.test_check_trainable_refuses_the_deterministic_variant(setup)
    suite.test_rollout_is_reproducible_from_a_noise_stream(setup)


def test_the_broken_noise_draw_works_from_a_generator():
    """``_DrawsWithTorchRandn`` passes the generator checks: only the NoiseStream check catches it."""
    suite = _BrokenSamplerSuite()
    suite.sampler = _DrawsWithTorchRandn(denoising_steps=4)
    suite.test_rollout_is_reproducible_from_its_generator(suite.make_setup())


# --- policies -------------------------------------------------------------------------------


class TestFakePolicyAtBatchSizeFive(PolicyContract):
    """The policy suite used to hard-code three timesteps: any batch size works now."""

    batch_size = 5

    def make_policy(self):
        return FakePolicy()

    def load_policy(self, directory):
        policy = FakePolicy(seed=99)
        policy.model.load_state_dict(torch.load(directory / "fake.pt", weights_only=True))
        return policy


class TestFakePolicyAtBatchSizeOne(TestFakePolicyAtBatchSizeFive):
    batch_size = 1


class TestFlowMatchingPolicyAtBatchSizeFive(PolicyContract):
    batch_size = 5

    def make_policy(self):
        return build("policy", "sd3")

    def load_policy(self, directory):
        return build("policy", "sd3", pretrained=str(directory))


def test_timesteps_spread_over_the_forward_process_in_its_own_type():
    ddpm = spread_timesteps(FakePolicy(), 3)
    assert ddpm.dtype == torch.long and ddpm.tolist() == [10, 500, 990]
    assert spread_timesteps(FakePolicy(), 1).tolist() == [500]
    flow = spread_timesteps(build("policy", "sd3"), 5)
    assert isinstance(build("policy", "sd3").forward_process, FlowMatchingProcess)
    assert flow.dtype.is_floating_point
    assert torch.allclose(flow, torch.tensor([10.0, 255.0, 500.0, 745.0, 990.0]))


class _RenamedReference(FakePolicy):
    """A reference whose weights carry other names than the policy's."""

    def named_trainable_parameters(self):
        named = super().named_trainable_parameters()
        return [(f"model.{n}", p) for n, p in named] if self._reference_names is not None else named


class _LiveReference(FakePolicy):
    """A reference that yields the policy's own weights, detached (no snapshot taken)."""

    def reference(self):
        reference = super().reference()
        live = self.named_trainable_parameters
        reference.named_trainable_parameters = lambda: [(n, p.detach()) for n, p in live()]
        return reference


class _ShuffledNames(FakePolicy):
    def named_trainable_parameters(self):
        return list(reversed(super().named_trainable_parameters()))


@pytest.mark.parametrize("policy, check, message", [
    (_RenamedReference(), "test_reference_names_the_same_weights_frozen_and_unchanged",
     r"yields 2 names, missing \['conv.weight', 'conv.bias'\], unexpected \['model.conv.weight', "
     r"'model.conv.bias'\]; expected the policy's 2 names"),
    (_LiveReference(), "test_reference_names_the_same_weights_frozen_and_unchanged",
     r"the reference's 'conv.weight' moved by 0.1 when the policy's weights moved"),
    (_ShuffledNames(), "test_named_trainable_parameters_match_trainable_parameters",
     r"entry 0 'conv.bias' \[1\] is not trainable_parameters\(\)\[0\] \[1, 2, 3, 3\]; "
     r"expected the same tensors"),
])
def test_the_policy_suite_fails_a_broken_policy(policy, check, message):
    with pytest.raises(AssertionError, match=message):
        getattr(TestFakePolicyAtBatchSizeFive(), check)(policy)


# --- metrics: declared keys -----------------------------------------------------------------


@attrs.frozen
class _Fraction:
    """A metric reporting ``{"fraction": value}`` and declaring ``declared``."""

    value: float = 0.5
    declared: tuple = (MetricKey("fraction", "higher", 0.0, 1.0),)
    needs_reference = False

    def __call__(self, context) -> dict[str, float]:
        return {"fraction": self.value}

    def metric_keys(self, options):
        return self.declared


class _BrokenMetricSuite(MetricContract):
    metric = _Fraction()

    def make_metric(self):
        return self.metric


def _suite(metric) -> _BrokenMetricSuite:
    suite = _BrokenMetricSuite()
    suite.metric = metric
    return suite


def test_the_metric_suite_passes_a_well_declared_metric():
    suite = _suite(_Fraction())
    suite.test_declared_keys_are_well_formed()
    suite.test_values_lie_in_their_declared_ranges(suite.make_context())


def test_the_metric_suite_fails_a_value_outside_its_declared_range():
    suite = _suite(_Fraction(value=1.5))
    with pytest.raises(AssertionError, match=r"fraction = 1.5, outside its declared range \[0.0, 1.0\]"):
        suite.test_values_lie_in_their_declared_ranges(suite.make_context())


@pytest.mark.parametrize("declared, message", [
    ((MetricKey("fraction", "up"),), r"declares 'fraction' with better = 'up'"),
    ((MetricKey("fraction", "higher", 1.0, 0.0),), r"the range \[1.0, 0.0\] is empty"),
    ((MetricKey("fraction", "higher", margin=-1.0),), r"margin = -1.0; expected a finite number >= 0"),
    (({"name": "fraction"},), r"expected MetricKey items"),
])
def test_the_metric_suite_fails_a_malformed_declaration(declared, message):
    with pytest.raises(AssertionError, match=message):
        _suite(_Fraction(declared=declared)).test_declared_keys_are_well_formed()


# --- through pytest, as a plugin author runs them ----------------------------------------------


def test_pytest_reports_each_broken_plugin_with_its_message(tmp_path):
    (tmp_path / "test_broken.py").write_text(textwrap.dedent('''
        import torch
        from ddrl_framework.testing import RegularizerContract, RewardModelContract

        class Detached:
            name, needs_reference, needs_reference_transition, needs_data = "detached", False, False, False

            def loss(self, context):
                return {"loss_detached": context.transition.mean.detach().square().mean()}

        class TestDetached(RegularizerContract):
            def make_regularizer(self):
                return Detached()

        class TestNanOnBlack(RewardModelContract):
            def make_reward(self):
                return lambda samples, prompts, metadata: samples.std((1, 2, 3)) / samples.mean((1, 2, 3))
    '''))
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                            capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert "3 failed" in result.stdout, result.stdout[-3000:]
    assert "test_gradients_are_not_zero_where_the_loss_is_not" in result.stdout
    assert "carries no gradient" in result.stdout
    assert "test_finite_on_edge_inputs[black]" in result.stdout
