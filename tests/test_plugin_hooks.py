"""Every hook: its documented example is a working plugin, registered and built through the hook."""

import re
import types
from pathlib import Path

import torch

from ddrl_framework.registry import Registry, make_plugin_manager
from ddrl_framework.testing import (
    DataSourceContract,
    LoggerContract,
    MetricContract,
    PolicyContract,
    RegularizerContract,
    RewardModelContract,
    SamplerContract,
)

DOC = Path(__file__).parents[1] / "docs" / "plugin-hooks.md"


def example_plugin(hook: str) -> types.ModuleType:
    """The python block under ``## <hook>(register)`` in docs/plugin-hooks.md, as a module."""
    section = DOC.read_text().split(f"## {hook}(register)")[1].split("\n## ")[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    module = types.ModuleType(f"example_{hook}")
    exec(compile(code, f"{DOC}:{hook}", "exec"), module.__dict__)
    return module


def build_example(hook: str, role: str, name: str, **options):
    manager = make_plugin_manager()
    plugin = example_plugin(hook)
    manager.register(plugin, name=f"example-{hook}")
    try:
        return Registry(manager).build(role, name, options, f"[{role}]")
    finally:
        manager.unregister(plugin)


def test_register_policies():
    policy = build_example("register_policies", "policy", "tiny-conv", size=4)
    assert policy.sample_shape == (1, 4, 4)


class TestRegisterPoliciesExample(PolicyContract):
    def make_policy(self):
        return build_example("register_policies", "policy", "tiny-conv")

    def load_policy(self, directory):
        policy = build_example("register_policies", "policy", "tiny-conv", seed=5)
        policy.model.load_state_dict(torch.load(directory / "fake.pt", weights_only=True))
        return policy


def test_register_samplers():
    assert build_example("register_samplers", "sampler", "ddpm", denoising_steps=3).eta == 1.0


class TestRegisterSamplersExample(SamplerContract):
    def make_sampler(self):
        return build_example("register_samplers", "sampler", "ddpm", denoising_steps=4)


def test_register_reward_models():
    reward = build_example("register_reward_models", "reward", "contrast", scale=2.0)
    samples = torch.stack([torch.zeros(1, 2, 2), torch.tensor([[[0.0, 1.0], [0.0, 1.0]]])])
    assert torch.allclose(reward(samples, ["a", "b"], {}), torch.tensor([0.0, 2 * 0.5774]), atol=1e-4)


class TestRegisterRewardModelsExample(RewardModelContract):
    def make_reward(self):
        return build_example("register_reward_models", "reward", "contrast")


def test_register_regularizers():
    regularizer = build_example("register_regularizers", "regularizer", "mean-shrinkage", beta=0.5)
    assert regularizer.beta == 0.5 and not regularizer.needs_data


class TestRegisterRegularizersExample(RegularizerContract):
    def make_regularizer(self):
        return build_example("register_regularizers", "regularizer", "mean-shrinkage")


def test_register_data_sources():
    source = build_example("register_data_sources", "data", "checkerboards", count=10)
    batch = next(source.loader(4, seed=0))
    assert batch.x0.shape == (4, 1, 8, 8) and set(batch.x0.unique().tolist()) == {0.0, 1.0}


class TestRegisterDataSourcesExample(DataSourceContract):
    def make_data_source(self):
        return build_example("register_data_sources", "data", "checkerboards")


def test_register_metrics():
    metric = build_example("register_metrics", "metric", "saturated-fraction", margin=0.1)
    from ddrl_framework.testing import make_eval_context
    from ddrl_framework.testing.fakes import FakePolicy
    from ddrl_plugins.samplers.ddim_sde import DdimSdeSampler

    context = make_eval_context(FakePolicy(), DdimSdeSampler(denoising_steps=3))
    value = metric(context)["saturated_fraction"]
    pixels = context.samples
    assert value == ((pixels < 0.1) | (pixels > 0.9)).float().mean().item()


class TestRegisterMetricsExample(MetricContract):
    def make_metric(self):
        return build_example("register_metrics", "metric", "saturated-fraction")


def test_register_loggers(tmp_path):
    logger = build_example("register_loggers", "logger", "csv", filename="out/values.csv")
    assert logger.start(tmp_path, {}) == f"values: {tmp_path / 'out' / 'values.csv'}"
    logger.log_metrics({"iteration": 4, "reward_mean": 0.25, "note": "x"}, 4, "eval")
    logger.close()
    assert (tmp_path / "out" / "values.csv").read_text().splitlines() == ["kind,step,key,value",
                                                                           "eval,4,reward_mean,0.25"]


class TestRegisterLoggersExample(LoggerContract):
    def make_logger(self):
        return build_example("register_loggers", "logger", "csv")
