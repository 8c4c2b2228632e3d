"""Every hook: its documented example is a working plugin, registered and built through the hook."""

import re
import types
from pathlib import Path

import torch

from ddrl_framework.registry import Registry, make_plugin_manager
from ddrl_framework.roles import ROLES
from ddrl_framework.testing import (
    DataSourceContract,
    LoggerContract,
    MetricContract,
    PolicyContract,
    RegularizerContract,
    RewardModelContract,
    SamplerContract,
)

DOCS = [Path(__file__).parents[2] / "docs" / page for page in ("plugin-hooks.md", "writing-a-plugin.md")]


def example_plugin(hook: str) -> types.ModuleType:
    """The example module of ``hook``'s role, as a module: the block docs/plugin-hooks.md or
    docs/writing-a-plugin.md introduces with "`ddrl new-plugin ROLE NAME` writes `ddrl_<name>.py`:"."""
    role = next(role for role in ROLES.values() if role.hook == hook).name
    pattern = rf"`ddrl new-plugin {role} [\w-]+` writes `ddrl_\w+\.py`:\n\n```python\n(.*?)```"
    found = [(page, code) for page in DOCS for code in re.findall(pattern, page.read_text(), re.S)]
    assert len(found) == 1, f"{len(found)} examples of a {role} in the docs; expected one"
    page, code = found[0]
    module = types.ModuleType(f"example_{hook}")
    exec(compile(code, f"{page}:{hook}", "exec"), module.__dict__)
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
    policy = build_example("register_policies", "policy", "pixel-conv", size=4)
    assert policy.sample_shape == (1, 4, 4)


class TestRegisterPoliciesExample(PolicyContract):
    def make_policy(self):
        return build_example("register_policies", "policy", "pixel-conv")

    def load_policy(self, directory):
        return build_example("register_policies", "policy", "pixel-conv", pretrained=str(directory))


def test_register_samplers():
    assert build_example("register_samplers", "sampler", "ddpm-ancestral", denoising_steps=3).num_steps == 3


class TestRegisterSamplersExample(SamplerContract):
    def make_sampler(self):
        return build_example("register_samplers", "sampler", "ddpm-ancestral", denoising_steps=4)


def test_register_reward_models():
    reward = build_example("register_reward_models", "reward", "center-mass", scale=2.0)
    samples = torch.zeros(2, 1, 4, 4)
    samples[1, :, 1:3, 1:3] = 1.0  # the central half of the second sample is white
    assert torch.allclose(reward(samples, ["a", "b"], {}), torch.tensor([0.0, 2.0]))


class TestRegisterRewardModelsExample(RewardModelContract):
    def make_reward(self):
        return build_example("register_reward_models", "reward", "center-mass")


def test_register_regularizers():
    regularizer = build_example("register_regularizers", "regularizer", "weight-anchor", beta=0.5)
    assert regularizer.beta == 0.5 and regularizer.needs_reference and not regularizer.needs_data


class TestRegisterRegularizersExample(RegularizerContract):
    def make_regularizer(self):
        return build_example("register_regularizers", "regularizer", "weight-anchor")


def test_register_data_sources():
    source = build_example("register_data_sources", "data", "squares", count=10, held_out_count=2)
    batch = next(source.loader(4, seed=0))
    assert batch.x0.shape == (4, 1, 8, 8) and set(batch.x0.unique().tolist()) == {0.0, 1.0}


class TestRegisterDataSourcesExample(DataSourceContract):
    def make_data_source(self):
        return build_example("register_data_sources", "data", "squares")


def test_register_metrics():
    metric = build_example("register_metrics", "metric", "saturation", margin=0.1)
    from ddrl_framework.testing import make_eval_context
    from ddrl_framework.testing.fakes import FakePolicy
    from ddrl_plugins.samplers.ddim_sde import DdimSdeSampler

    context = make_eval_context(FakePolicy(), DdimSdeSampler(denoising_steps=3))
    value = metric(context)["saturation_saturated"]
    pixels = context.samples
    assert value == ((pixels < 0.1) | (pixels > 0.9)).float().mean().item()


class TestRegisterMetricsExample(MetricContract):
    def make_metric(self):
        return build_example("register_metrics", "metric", "saturation")


def test_register_loggers(tmp_path):
    logger = build_example("register_loggers", "logger", "csv-values", filename="out/values.csv")
    assert logger.start(tmp_path, {}) == f"csv-values: {tmp_path / 'out' / 'values.csv'}"
    logger.log_metrics({"iteration": 4, "reward_mean": 0.25, "note": "x"}, 4, "eval")
    logger.close()
    assert (tmp_path / "out" / "values.csv").read_text().splitlines() == ["kind,step,key,value",
                                                                           "eval,4,reward_mean,0.25"]


class TestRegisterLoggersExample(LoggerContract):
    def make_logger(self):
        return build_example("register_loggers", "logger", "csv-values")
