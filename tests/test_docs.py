"""Docs cannot drift from code: every hook is documented with its signature and has a test;
every config field is in the configuration reference."""

import inspect
import re
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


WRITING = ROOT / "docs" / "writing-a-plugin.md"


def _section(text: str, heading: str) -> str:
    return text.split(f"\n{heading}\n")[1].split("\n#")[0]


def table_fields(text: str, cls_name: str) -> list[str]:
    """The fields a ``### `Cls``` table of writing-a-plugin.md lists, in order."""
    return re.findall(r"^\| `(\w+)` \|", _section(text, f"### `{cls_name}`"), re.M)


@pytest.mark.parametrize("cls_name", ["StepContext", "UpdateContext", "EvalContext"])
def test_every_context_field_is_in_its_table_and_no_other(cls_name):
    import ddrl_framework.types as types

    documented = table_fields(WRITING.read_text(), cls_name)
    fields = [f.name for f in attrs.fields(getattr(types, cls_name))]
    assert documented == fields, f"docs/writing-a-plugin.md's {cls_name} table lists {documented}; the class has {fields}"


def test_a_context_table_missing_a_field_is_caught():
    import ddrl_framework.types as types

    text = WRITING.read_text()
    row = next(line for line in _section(text, "### `UpdateContext`").splitlines() if line.startswith("| `data` |"))
    broken = text.replace(_section(text, "### `UpdateContext`"), _section(text, "### `UpdateContext`").replace(row + "\n", ""))
    assert table_fields(broken, "UpdateContext") != [f.name for f in attrs.fields(types.UpdateContext)]


@pytest.mark.parametrize("role", ["policy", "sampler", "reward", "regularizer", "data", "metric"])
def test_each_role_example_is_what_the_scaffold_writes(role):
    from ddrl_framework.scaffold import PluginNames, render

    section = WRITING.read_text().split(f"\n### {role} (`ddrl new-plugin {role} ")[1]
    name = section.split("`")[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert code == render(f"{role}.py", PluginNames(role=role, name=name).values)


def test_every_role_string_is_in_the_registry_table():
    from ddrl_framework.registry import ROLES

    table = _section(WRITING.read_text(), "## The registry")
    assert re.findall(r'^\| `"(\w+)"` \|', table, re.M) == list(ROLES)
