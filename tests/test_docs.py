"""Docs cannot drift from code: every hook is documented with its signature and has a test;
every config field is in the configuration reference."""

import inspect
import re
from pathlib import Path

import attrs
import pytest

from ddrl_framework import hookspecs
from ddrl_framework.roles import ROLES
from ddrl_framework.running.config import Experiment, PretrainConfig, TrainConfig

ROOT = Path(__file__).parents[1]
HOOKS = [name for name, f in vars(hookspecs).items()
         if inspect.isfunction(f) and hasattr(f, "ddrl_framework_spec")]


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
    import ddrl_framework.contexts as contexts

    documented = table_fields(WRITING.read_text(), cls_name)
    fields = [f.name for f in attrs.fields(getattr(contexts, cls_name))]
    assert documented == fields, f"docs/writing-a-plugin.md's {cls_name} table lists {documented}; the class has {fields}"


def test_a_context_table_missing_a_field_is_caught():
    import ddrl_framework.contexts as contexts

    text = WRITING.read_text()
    row = next(line for line in _section(text, "### `UpdateContext`").splitlines() if line.startswith("| `data` |"))
    broken = text.replace(_section(text, "### `UpdateContext`"), _section(text, "### `UpdateContext`").replace(row + "\n", ""))
    assert table_fields(broken, "UpdateContext") != [f.name for f in attrs.fields(contexts.UpdateContext)]


@pytest.mark.parametrize("role", [r for r in ROLES if r != "logger"])  # a logger: docs/plugin-hooks.md
def test_each_role_example_is_what_the_scaffold_writes(role):
    from ddrl_framework.scaffold import PluginNames, render

    section = WRITING.read_text().split(f"\n### {role} (`ddrl new-plugin {role} ")[1]
    name = section.split("`")[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert code == render(f"{role}.py", PluginNames(role=role, name=name).values)


def role_rows(text: str) -> list[list[str]]:
    """The cells of each row of writing-a-plugin.md's role table, backquotes removed."""
    rows = re.findall(r'^\| `"\w+"` \|.*$', _section(text, "## The registry"), re.M)
    return [[cell.strip().replace("`", "") for cell in row.strip("|").split("|")] for row in rows]


def expected_role_rows() -> list[list[str]]:
    """The table's columns but "define" as roles.ROLES states them."""
    return [[f'"{r.name}"', r.hook, r.protocol, r.suite, r.table] for r in ROLES.values()]


def test_the_registry_table_is_the_role_table():
    rows = role_rows(WRITING.read_text())
    assert [row[:4] + row[5:] for row in rows] == expected_role_rows()


def test_each_role_defines_what_its_contract_suite_asks_for():
    from ddrl_framework import testing

    for row, role in zip(role_rows(WRITING.read_text()), ROLES.values(), strict=True):
        for method in re.findall(r"(\w+)\(", row[4]):
            assert callable(getattr(getattr(testing, role.suite), method, None)), f"{role.suite}.{method}"


def test_a_registry_table_row_that_differs_from_the_role_table_is_caught():
    text = WRITING.read_text().replace("| `[[metrics]]` |", "| `[metrics]` |")
    rows = role_rows(text)
    assert [row[:4] + row[5:] for row in rows] != expected_role_rows()
