"""Each role's output is checked by one function (``kit.role_outputs``): a broken plugin is
reported in the same words by the run, by ``ddrl doctor`` and by its contract suite. Each config
key is checked in one place, and every key-path error has one format (``options.key_error``)."""

from __future__ import annotations

import types

import attrs
import pytest
import torch

from ddrl_framework.errors import TrainingError, UserError
from ddrl_framework.evaluation.scoring import WeightedReward, score_each
from ddrl_framework.kit.role_outputs import check_reward_output, on_policy_ratio_gap
from ddrl_framework.options import key_error
from ddrl_framework.running.config import structure_experiment
from ddrl_framework.running.doctor import Probe, check_ratio
from ddrl_framework.running.guards import check_losses
from ddrl_framework.running.validation import check_steps_in_range
from ddrl_framework.testing import FakePolicy, RewardModelContract, SamplerContract, fake_batch
from ddrl_framework.testing.fakes import pixel_shape
from ddrl_framework.testing.regularizer_contract import check_named_scalars
from ddrl_plugins.samplers.ddim_sde import DdimSdeSampler

WRONG_SHAPE = ("returned shape [4, 1] torch.float32; expected one float per sample, shape [4] "
               "(RewardModel protocol)")


def _per_sample_column(samples, prompts, metadata):
    """One value per sample, as a column ``[B, 1]``: the commonest broken reward."""
    return samples.flatten(1).mean(1, keepdim=True)


class _ColumnRewardSuite(RewardModelContract):
    def make_reward(self):
        return _per_sample_column


def test_a_reward_of_the_wrong_shape_is_reported_alike_by_scoring_and_by_its_contract():
    reward = WeightedReward(key="column", name="column", weight=1.0, model=_per_sample_column)
    samples = _ColumnRewardSuite().make_samples()
    with pytest.raises(TrainingError) as by_the_run:
        score_each([reward], samples, ("a",) * 4, {})
    with pytest.raises(AssertionError) as by_the_suite:
        _ColumnRewardSuite().test_one_finite_float_per_sample()
    assert f"reward model 'column' {WRONG_SHAPE}" in str(by_the_run.value)
    assert f"the reward {WRONG_SHAPE}" in str(by_the_suite.value)


def test_the_reward_check_refuses_what_is_not_a_tensor_and_passes_one_value_per_sample():
    with pytest.raises(ValueError, match=r"^plugin 'x' returned a list; expected one float per sample"):
        check_reward_output([0.5] * 4, 4, "plugin 'x'")
    check_reward_output(torch.zeros(4), 4, "plugin 'x'")  # no error


def test_a_vector_loss_is_reported_alike_by_the_run_and_by_the_regularizer_contract():
    losses = {"loss_kl": torch.zeros(6, requires_grad=True)}
    expected = ("['loss_kl'] is shape [6] torch.float32; expected a dict of 'loss_*' names to scalar float "
                "tensors (Regularizer protocol)")
    with pytest.raises(TrainingError) as by_the_run:
        check_losses(losses, "regularizer 'kl'", "loss()")
    with pytest.raises(AssertionError) as by_the_suite:
        check_named_scalars(losses, "loss()")
    assert f"regularizer 'kl': loss(){expected}" in str(by_the_run.value)
    assert str(by_the_suite.value) == f"loss(){expected}"


@attrs.frozen(kw_only=True)
class _RecordsOffLogProbs(DdimSdeSampler):
    """Records log-probs 1e-3 off what its transition recomputes: the ratio is not 1."""

    def rollout(self, policy, cond, noise, generator=None):
        trajectory = DdimSdeSampler.rollout(self, policy, cond, noise, generator)
        return attrs.evolve(trajectory, log_probs=trajectory.log_probs + 1e-3)


class _OffRatioSuite(SamplerContract):
    def make_sampler(self):
        return _RecordsOffLogProbs(denoising_steps=4)


def test_an_on_policy_ratio_off_1_fails_doctor_and_the_sampler_contract_alike():
    suite = _OffRatioSuite()
    policy, sampler, cond, noise = suite.make_setup()
    trajectory = sampler.rollout(policy, cond, noise, torch.Generator().manual_seed(1))
    gap = on_policy_ratio_gap(sampler, policy, trajectory, cond, range(sampler.num_steps))
    assert not gap.ok and gap.worst == pytest.approx(1e-3, rel=1e-2)
    parts = types.SimpleNamespace(policy=policy, sampler=sampler)
    probe = Probe(parts=parts, batch=fake_batch(4, pixel_shape(policy)), cond=cond, trajectory=trajectory)
    result = check_ratio(probe)
    assert result.status == "FAIL" and result.value == f"max |ratio - 1| = {gap.worst:.2e}"
    with pytest.raises(AssertionError, match=r"on-policy ratio differs from 1 by [0-9.e-]+; expected exactly 1"):
        suite.test_ratio_is_exactly_one_on_policy(suite.make_setup())


def test_an_on_policy_rollout_passes_the_ratio_check():
    policy, sampler = FakePolicy(), DdimSdeSampler(denoising_steps=4)
    cond = policy.encode_conditions(fake_batch(2, pixel_shape(policy)))
    noise = torch.randn((2, *policy.sample_shape), generator=torch.Generator().manual_seed(0))
    trajectory = sampler.rollout(policy, cond, noise, torch.Generator().manual_seed(1))
    gap = on_policy_ratio_gap(sampler, policy, trajectory, cond, range(sampler.num_steps))
    assert gap.ok and gap.without_gradient == ()


# --- config keys -----------------------------------------------------------------------------

MINIMAL = {"output_dir": "runs/x", "policy": {"name": "unet2d"}, "sampler": {"name": "ddim-sde"},
           "data": {"name": "sklearn-digits"}, "rewards": [{"name": "brightness"}]}


def test_key_errors_name_the_file_and_the_key_first():
    assert key_error("x.toml: train.groups", "must be >= 1") == "x.toml: train.groups: must be >= 1"
    with pytest.raises(UserError, match=r"^x\.toml: train\.groups: must be a finite number >= 1, got 0$"):
        structure_experiment({**MINIMAL, "train": {"groups": 0}}, "x.toml")


def test_an_experiment_without_rewards_is_refused_at_its_key():
    with pytest.raises(UserError, match=r"^x\.toml: rewards: must list at least one reward"):
        structure_experiment({**MINIMAL, "rewards": []}, "x.toml")


def test_trained_steps_outside_the_sampler_are_refused_in_one_place():
    check_steps_in_range([0, 3], 4, "ddim-sde", "x.toml")  # no error
    with pytest.raises(UserError, match=r"^x\.toml: train\.trained_denoising_steps: \[4, -1\] out of range: "
                       r"the sampler 'ddim-sde' has 4 denoising steps, 0\.\.3$"):
        check_steps_in_range([0, 4, -1], 4, "ddim-sde", "x.toml")
