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

ROOT = Path(__file__).parents[2]
HOOKS = [name for name, f in vars(hookspecs).items()
         if inspect.isfunction(f) and hasattr(f, "ddrl_framework_spec")]


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_with_its_exact_signature(hook):
    parameters = inspect.signature(getattr(hookspecs, hook)).parameters
    signature = f"{hook}({', '.join(parameters)})"
    assert f"## {signature}\n" in (ROOT / "docs" / "plugin-hooks.md").read_text()


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_test(hook):
    assert f"def test_{hook}(" in (ROOT / "tests" / "contracts" / "test_plugin_hooks.py").read_text()


@pytest.mark.parametrize("cls", [Experiment, PretrainConfig, TrainConfig])
def test_every_config_field_is_documented(cls):
    reference = (ROOT / "docs" / "configuration.md").read_text()
    for field in attrs.fields(cls):
        assert f"`{field.name}`" in reference, f"{cls.__name__}.{field.name} missing from docs"


def test_readme_opens_with_the_two_quickstart_commands():
    readme = (ROOT / "README.md").read_text()
    quickstart = readme.split("## Quickstart")[1].split("\n## ")[0]
    assert "make run" in quickstart and "make test " in quickstart and "make test-fast" in quickstart
    makefile = (ROOT / "Makefile").read_text()
    assert "\ntest:" in makefile and "\ntest-fast:" in makefile and '-m "not slow"' in makefile
    assert "make test" in (ROOT / ".ci" / "run").read_text()


WRITING = ROOT / "docs" / "writing-a-plugin.md"
HOOKS_PAGE = ROOT / "docs" / "plugin-hooks.md"


def _section(text: str, heading: str) -> str:
    return text.split(f"\n{heading}\n")[1].split("\n#")[0]


def table_fields(text: str, cls_name: str) -> list[str]:
    """The fields a ``### `Cls``` table of plugin-hooks.md lists, in order."""
    return re.findall(r"^\| `(\w+)` \|", _section(text, f"### `{cls_name}`"), re.M)


@pytest.mark.parametrize("cls_name", ["StepContext", "UpdateContext", "EvalContext"])
def test_every_context_field_is_in_its_table_and_no_other(cls_name):
    import ddrl_framework.contexts as contexts

    documented = table_fields(HOOKS_PAGE.read_text(), cls_name)
    fields = [f.name for f in attrs.fields(getattr(contexts, cls_name))]
    assert documented == fields, f"docs/plugin-hooks.md's {cls_name} table lists {documented}; the class has {fields}"


def test_a_context_table_missing_a_field_is_caught():
    import ddrl_framework.contexts as contexts

    text = HOOKS_PAGE.read_text()
    row = next(line for line in _section(text, "### `UpdateContext`").splitlines() if line.startswith("| `data` |"))
    broken = text.replace(_section(text, "### `UpdateContext`"), _section(text, "### `UpdateContext`").replace(row + "\n", ""))
    assert table_fields(broken, "UpdateContext") != [f.name for f in attrs.fields(contexts.UpdateContext)]


def scaffold_blocks() -> list[tuple[str, str, str, str]]:
    """``(role, name, path, code)`` of every block the two plugin pages introduce with
    "`ddrl new-plugin ROLE NAME` writes `PATH`:"."""
    pattern = r"`ddrl new-plugin (\w+) ([\w-]+)` writes `([\w/.]+)`:\n\n```python\n(.*?)```"
    return [match for page in (WRITING, HOOKS_PAGE) for match in re.findall(pattern, page.read_text(), re.S)]


def test_each_block_is_what_the_scaffold_writes():
    from ddrl_framework.scaffold import PluginNames, render

    blocks = scaffold_blocks()
    assert blocks
    for role, name, path, code in blocks:
        values = PluginNames(role=role, name=name).values
        template = {f"{values['module']}.py": f"{role}.py", f"tests/test_{values['module']}.py": f"test_{role}.py"}
        assert path in template, f"`ddrl new-plugin {role} {name}` writes no `{path}`"
        assert code == render(template[path], values), f"the docs' {path} differs from what the scaffold writes"


def test_each_role_has_one_example():
    """One set of examples: each role's component module is shown once, on one of the two pages."""
    modules = [role for role, name, path, _ in scaffold_blocks() if not path.startswith("tests/")]
    assert sorted(modules) == sorted(ROLES), f"component examples by role: {sorted(modules)}"


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


CONCEPTS = ROOT / "docs" / "concepts.md"


def layout_names(text: str) -> list[str]:
    """The paths the layout block of docs/concepts.md names (``ddrl_framework/kit/``,
    ``ddrl_framework/cli.py``, ...): on each line, the names before the description, each under
    the folder of the line above it with less indentation."""
    block = text.split("\n## The house: layers the folders show\n")[1].split("```\n")[1]
    parents: list[tuple[int, str]] = []
    names = []
    for line in block.splitlines():
        indent = len(line) - len(line.lstrip())
        tokens = re.split(r"\s{2,}", line.strip())[0].split(" ")
        if not all(t.endswith(("/", ".py")) for t in tokens):
            continue  # a description's next line
        while parents and parents[-1][0] >= indent:
            parents.pop()
        prefix = parents[-1][1] if parents else ""
        names += [prefix + t for t in tokens]
        if len(tokens) == 1 and tokens[0].endswith("/"):
            parents.append((indent, prefix + tokens[0]))
    return names


def test_the_layout_names_what_exists_and_every_folder():
    names = layout_names(CONCEPTS.read_text())
    assert "ddrl_framework/kit/" in names and "plugins/shared/" in names
    missing = [name for name in names if not (ROOT / name).exists()]
    assert not missing, f"docs/concepts.md's layout names {missing}, which do not exist"
    folders = [f"{path.relative_to(ROOT)}/" for top in ("ddrl_framework", "plugins")
               for path in sorted((ROOT / top).iterdir()) if path.is_dir() and path.name != "__pycache__"]
    modules = [f"ddrl_framework/{path.name}" for path in sorted((ROOT / "ddrl_framework").glob("*.py"))
               if path.name != "__init__.py"]
    unnamed = [path for path in folders + modules if path not in names]
    assert not unnamed, f"docs/concepts.md's layout (## The house) leaves out {unnamed}"


def test_a_layout_missing_a_folder_is_caught():
    text = CONCEPTS.read_text().replace("  distributed/   torchrun", "  distributedx/  torchrun")
    names = layout_names(text)
    assert "ddrl_framework/distributed/" not in names and "ddrl_framework/distributedx/" in names


PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def referenced_paths(text: str) -> list[str]:
    """Backquoted repository paths (``ddrl_framework/kit/cache.py``, ``configs/x.toml``, ...)
    and the targets of relative Markdown links in a page. A file that ``ddrl new-plugin`` writes
    (in a plugin's package, not here) is not one."""
    text = re.sub(r"`ddrl new-plugin [\w -]+` writes `[^`]*`", "", text)
    quoted = re.findall(r"`((?:ddrl_framework|plugins|configs|benchmarks|docs|tests)/[\w./-]*"
                        r"|[\w.-]+(?:/[\w.-]+)+\.(?:py|toml|md|json|jsonl))`", text)
    linked = re.findall(r"\]\(([^)#:\s]+)(?:#[^)]*)?\)", text)
    return [path for path in quoted + linked if "..." not in path and not path.startswith("runs/")]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_path_a_page_names_exists(page):
    """A path is read from the repository's root, from ``ddrl_framework/`` or ``plugins/`` (as
    ``kit/fused.py``), or from the page's own folder (a link)."""
    bases = (ROOT, ROOT / "ddrl_framework", ROOT / "plugins", page.parent)
    missing = [path for path in referenced_paths(page.read_text())
               if not any((base / path).exists() for base in bases)]
    assert not missing, f"{page.relative_to(ROOT)} names {missing}, which do not exist"


def test_a_stale_path_is_caught():
    assert "benchmarks/iteration_time.py" in referenced_paths("(`benchmarks/iteration_time.py`)")
    assert "gone.md" in referenced_paths("[gone](gone.md#a-section)")


@pytest.mark.parametrize("page", ["docs/configuration.md", "docs/comparisons.md"])
def test_the_generated_config_tables_are_current(page):
    from ddrl_framework.running.config_docs import PAGES, regenerate

    text = (ROOT / page).read_text()
    assert page in PAGES and "<!-- generated: " in text
    assert regenerate(text) == text, (f"{page}'s config tables differ from the fields' metadata in "
                                      "ddrl_framework/running/config.py; regenerate them with "
                                      "`python -m ddrl_framework.running.config_docs`")


def test_each_core_section_has_its_generated_table():
    from ddrl_framework.running.config_docs import SECTIONS

    text = "".join((ROOT / page).read_text() for page in ("docs/configuration.md", "docs/comparisons.md"))
    assert sorted(re.findall(r"<!-- generated: ([\w.-]+) -->", text)) == sorted(SECTIONS)


def test_a_stale_generated_table_is_caught():
    from ddrl_framework.running.config_docs import regenerate

    text = (ROOT / "docs" / "configuration.md").read_text()
    stale = text.replace("| `iterations` | `100` |", "| `iterations` | `50` |")
    assert stale != text and regenerate(stale) == text
