"""Fakes and contract suites for plugin authors.

Subclass a contract in your own tests and define its factory method::

    from ddrl_framework.testing import RewardModelContract

    class TestMyReward(RewardModelContract):
        def make_reward(self):
            return MyReward()

Each contract is a plain pytest class: pytest collects the subclass and runs every check.
"""

from ddrl_framework.testing.contracts import (
    DataSourceContract,
    LoggerContract,
    MetricContract,
    PolicyContract,
    RegularizerContract,
    RewardModelContract,
    SamplerContract,
)
from ddrl_framework.testing.fakes import (
    FakeBackbone,
    FakePolicy,
    FakeSampler,
    fake_batch,
    make_eval_context,
    make_step_context,
    make_update_context,
    perturb,
)
from ddrl_framework.testing.policy_contract import spread_timesteps

__all__ = [
    "DataSourceContract",
    "FakeBackbone",
    "LoggerContract",
    "FakePolicy",
    "FakeSampler",
    "MetricContract",
    "PolicyContract",
    "RegularizerContract",
    "RewardModelContract",
    "SamplerContract",
    "fake_batch",
    "make_eval_context",
    "make_step_context",
    "make_update_context",
    "perturb",
    "spread_timesteps",
]
