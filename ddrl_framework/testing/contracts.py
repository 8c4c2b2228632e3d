"""Contract suites: one pytest class per protocol. Subclass one and define its ``make_*`` method.

Every built-in plugin passes these; a third-party plugin can run the same checks on itself. A
failing check says what it expected and what came back. The Policy, Sampler and Regularizer
suites live in their own modules and are imported here.
"""

from __future__ import annotations

import math

import pytest
import torch

from ddrl_framework.kit.role_outputs import check_reward_output
from ddrl_framework.metric_key import MetricKey
from ddrl_framework.protocols import DataSource, DeclaresKeys, Metric, RewardModel
from ddrl_framework.testing.fakes import FakeBackbone, make_eval_context
from ddrl_framework.testing.logger_contract import LoggerContract
from ddrl_framework.testing.messages import brief, protocol_message, shape
from ddrl_framework.testing.policy_contract import PolicyContract
from ddrl_framework.testing.regularizer_contract import RegularizerContract
from ddrl_framework.testing.sampler_contract import SamplerContract
from ddrl_framework.types import DataBatch

__all__ = ["DataSourceContract", "LoggerContract", "MetricContract", "PolicyContract", "RegularizerContract",
           "RewardModelContract", "SamplerContract"]

EDGE_INPUTS = ("black", "white", "noise")


class RewardModelContract:
    """Define ``make_reward()``; override ``make_samples()`` for other shapes (e.g. videos).

    Rewards must be finite on edge inputs too: all black, all white, uniform noise.
    """

    def make_reward(self) -> RewardModel:
        raise NotImplementedError

    def make_samples(self) -> torch.Tensor:
        return torch.rand((4, 1, 8, 8), generator=torch.Generator().manual_seed(0))

    def make_edge_samples(self, kind: str) -> torch.Tensor:
        """``make_samples()``'s shape, all black (0), all white (1) or uniform noise."""
        like = self.make_samples()
        if kind == "black":
            return torch.zeros_like(like)
        if kind == "white":
            return torch.ones_like(like)
        return torch.rand(like.shape, generator=torch.Generator().manual_seed(7)).to(like)

    def _score(self, reward, samples: torch.Tensor, what: str) -> torch.Tensor:
        """The reward of ``samples``, checked as a run checks it (``kit.role_outputs``), then
        stricter: floating and finite."""
        prompts = tuple(f"prompt {i}" for i in range(samples.shape[0]))
        values = reward(samples, prompts, {})
        try:
            check_reward_output(values, samples.shape[0], "the reward")
        except ValueError as error:
            raise AssertionError(f"on {what} {shape(samples)}: {error}") from None
        assert values.dtype.is_floating_point, (
            f"on {what} the reward returned {values.dtype}; expected a float dtype")
        assert torch.isfinite(values).all(), (
            f"on {what} the reward returned {brief(values)}; expected finite values")
        return values

    def test_implements_protocol(self):
        reward = self.make_reward()
        assert isinstance(reward, RewardModel), protocol_message(reward, RewardModel)

    def test_one_finite_float_per_sample(self):
        self._score(self.make_reward(), self.make_samples(), "random samples")

    @pytest.mark.parametrize("kind", EDGE_INPUTS)
    def test_finite_on_edge_inputs(self, kind):
        self._score(self.make_reward(), self.make_edge_samples(kind), f"an all-{kind} batch")

    def test_deterministic_and_not_constant(self):
        reward, samples = self.make_reward(), self.make_samples()
        first, again = (self._score(reward, samples, "random samples") for _ in range(2))
        assert torch.equal(first, again), (
            f"two calls on the same samples gave {brief(first)} and {brief(again)}")
        black = self._score(reward, self.make_edge_samples("black"), "an all-black batch")
        assert float((first - black).abs().max()) > 0, (
            f"the reward is {brief(first)} on random samples and on an all-black batch alike; "
            "expected it to depend on the pixels")


class DataSourceContract:
    """Define ``make_data_source()``."""

    batch_size = 5

    def make_data_source(self) -> DataSource:
        raise NotImplementedError

    def test_implements_protocol(self):
        source = self.make_data_source()
        assert isinstance(source, DataSource), protocol_message(source, DataSource)

    def test_batches_have_the_requested_size(self):
        loader = self.make_data_source().loader(self.batch_size, seed=0)
        for i in range(3):
            batch = next(loader)
            assert isinstance(batch, DataBatch), (
                f"batch {i} is a {type(batch).__name__}; expected a DataBatch")
            assert len(batch) == self.batch_size, (
                f"batch {i} has {len(batch)} prompts; expected {self.batch_size}")
            assert batch.x0 is None or batch.x0.shape[0] == self.batch_size, (
                f"batch {i}'s x0 has shape {shape(batch.x0)}; expected {self.batch_size} samples")

    def test_a_restored_loader_continues_at_the_same_batch(self):
        source = self.make_data_source()
        loader = source.loader(self.batch_size, seed=3)
        next(loader)
        state = loader.state_dict()
        expected = [next(loader).prompts for _ in range(3)]
        restored = source.loader(self.batch_size, seed=3)
        restored.load_state_dict(state)
        got = [next(restored).prompts for _ in range(3)]
        assert got == expected, f"a restored loader yields prompts {got}; expected {expected}"

    def test_seed_changes_the_order(self):
        source = self.make_data_source()
        a, b = (next(source.loader(self.batch_size, seed=s)) for s in (0, 1))
        assert a.prompts != b.prompts or (a.x0 is not None and not torch.equal(a.x0, b.x0)), (
            f"seeds 0 and 1 give the same first batch ({a.prompts}); expected another order")

    def test_held_out_is_a_batch(self):
        held_out = self.make_data_source().held_out()
        assert isinstance(held_out, DataBatch), (
            f"held_out() is a {type(held_out).__name__}; expected a DataBatch")
        assert len(held_out) > 0, "held_out() is empty; expected at least one member"


class MetricContract(FakeBackbone):
    """Define ``make_metric()``; override ``make_policy()`` / ``make_sampler()`` if needed, and
    ``metric_options()`` when ``make_metric()`` sets options its declared keys depend on."""

    def make_metric(self) -> Metric:
        raise NotImplementedError

    def metric_options(self) -> dict:
        """The ``[[metrics]]`` options ``make_metric()`` builds with (``name`` left out)."""
        return {}

    def declared_keys(self) -> list[MetricKey]:
        """What the metric declares of its keys (:class:`DeclaresKeys`); none when it declares nothing."""
        metric = self.make_metric()
        return list(metric.metric_keys(self.metric_options())) if isinstance(metric, DeclaresKeys) else []

    def make_context(self):
        return make_eval_context(self.make_policy(), self.make_sampler())

    @pytest.fixture
    def context(self):
        return self.make_context()

    def test_implements_protocol(self):
        metric = self.make_metric()
        assert isinstance(metric, Metric), protocol_message(metric, Metric)
        assert isinstance(metric.needs_reference, bool), (
            f"needs_reference is {metric.needs_reference!r}; expected a bool")

    def test_returns_named_finite_floats(self, context):
        values = self.make_metric()(context)
        assert isinstance(values, dict) and values, (
            f"the metric returned {values!r}; expected a dict of named floats")
        for key, value in values.items():
            assert isinstance(key, str), f"the metric returned key {key!r}; expected a str"
            assert math.isfinite(float(value)), (
                f"the metric returned {key} = {value!r}; expected a finite float")

    def test_declared_keys_are_well_formed(self):
        for key in self.declared_keys():
            assert isinstance(key, MetricKey), f"metric_keys() returned {key!r}; expected MetricKey items"
            assert not key.problems(), f"the metric declares '{key.name}' with {'; '.join(key.problems())}"

    def test_values_lie_in_their_declared_ranges(self, context):
        declared = {key.name: key for key in self.declared_keys()}
        for name, value in self.make_metric()(context).items():
            if name in declared:
                key = declared[name]
                assert key.contains(float(value)), (
                    f"the metric returned {name} = {value!r}, outside its declared range [{key.low}, {key.high}]")

    def test_is_deterministic(self, context):
        metric = self.make_metric()
        first, again = metric(context), metric(context)
        assert first == again, f"two calls on the same context gave {first} and {again}"
