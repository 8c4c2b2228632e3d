"""Docs cannot drift from code: every hook is documented with its signature and has a test;
every config field is in the configuration reference."""

import inspect
from pathlib import Path

import attrs
import pytest

from ddrl_framework import hookspecs
from ddrl_framework.running.config import Experiment, PretrainConfig, TrainConfig

ROOT = Path(__file__).parents[1]
HOOKS = [name for name, f in vars(hookspecs).items()
         if inspect.isfunction(f) and hasattr(f, "ddrl_framework_spec")]


def test_there_are_six_hooks():
    assert sorted(HOOKS) == sorted(["register_policies", "register_samplers", "register_reward_models",
                                    "register_regularizers", "register_data_sources",
                                    "register_metrics"])


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_with_its_exact_signature(hook):
    parameters = inspect.signature(getattr(hookspecs, hook)).parameters
    signature = f"{hook}({', '.join(parameters)})"
    assert f"## {signature}\n" in (ROOT / "docs" / "plugin-hooks.md").read_text()


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_test(hook):
    assert f"def test_{hook}(" in (ROOT / "tests" / "test_plugin_hooks.py").read_text()


@pytest.mark.parametrize("cls", [Experiment, PretrainConfig, TrainConfig])
def test_every_config_field_is_documented(cls):
    reference = (ROOT / "docs" / "configuration.md").read_text()
    for field in attrs.fields(cls):
        assert f"`{field.name}`" in reference, f"{cls.__name__}.{field.name} missing from docs"


def test_readme_opens_with_the_two_quickstart_commands():
    readme = (ROOT / "README.md").read_text()
    quickstart = readme.split("## Quickstart")[1].split("\n## ")[0]
    assert "make run" in quickstart and "make test" in quickstart
    assert "make test" in (ROOT / ".ci" / "run").read_text()
