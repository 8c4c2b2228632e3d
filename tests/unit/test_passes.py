"""Network passes per iteration: every ``predict`` call counted by its batch size."""

import torch

from ddrl_framework.running.passes import PassCounter
from ddrl_framework.testing.fakes import FakePolicy, FakeSampler


def test_a_rollout_costs_batch_times_steps_passes_and_take_resets():
    policy, sampler = FakePolicy(), FakeSampler()
    counter = PassCounter(policy, policy)  # the same object twice is wrapped once
    sampler.rollout(policy, None, torch.randn(6, 1, 8, 8))
    assert counter.take() == 6 * sampler.num_steps
    assert counter.take() == 0


def test_the_reference_is_counted_too():
    policy = FakePolicy()
    reference = policy.reference()
    counter = PassCounter(policy, reference)
    x, t = torch.randn(3, 1, 8, 8), torch.full((3,), 500)
    policy.predict(x, t, None)
    reference.predict(x, t, None)
    assert counter.take() == 6


def test_a_policy_that_cannot_be_wrapped_is_not_counted():
    class Slotted:
        __slots__ = ()

        def predict(self, x_t, t, cond):
            return x_t

    assert PassCounter(Slotted()).take() is None
