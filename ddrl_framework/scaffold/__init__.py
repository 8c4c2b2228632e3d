"""``ddrl new-plugin ROLE NAME``: a ready plugin package for one component.

It writes ``ddrl-<name>/`` with ``pyproject.toml`` (the ``[project.entry-points.ddrl_framework]``
entry point), ``ddrl_<name>.py`` (the hook and a minimal working component of the role),
``tests/test_ddrl_<name>.py`` (the component built through the registry and the role's contract
suite), a README, a ``.gitignore`` and a GitHub Actions workflow running the tests. The
templates are in ``templates/``, filled with :class:`string.Template` (``$name``, ``$cls``, ...).

``--diffusers PIPELINE`` (policies only) writes a backbone instead: the hook in ``ddrl_<name>.py``,
a ``DiffusersPolicy`` subclass for diffusers' ``PIPELINE`` in ``ddrl_<name>_pipeline.py``, tests
with both contract suites and the pipeline-fidelity check, and ``<name>-tiny.toml`` with the three
``[compare]`` arms (``diffusers_backbones.py`` says what differs between pipelines).
"""

from __future__ import annotations

import re
import string
from pathlib import Path

import attrs

from ddrl_framework import __version__
from ddrl_framework.errors import UserError
from ddrl_framework.registry import load_registry
from ddrl_framework.roles import ROLES, Role
from ddrl_framework.scaffold.diffusers_backbones import Recipe, recipe_for, recipe_values

TEMPLATES = Path(__file__).parent / "templates"
NAME = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")

# what the README's experiment sets after the role's table and the component's name
USAGE_OPTIONS = {
    "policy": 'size = 8\n\n[sampler]\nname = "ddim-sde"  # a sampler of its "ddpm" process',
    "sampler": "denoising_steps = 10",
    "reward": "weight = 1.0\nscale = 1.0",
    "regularizer": "beta = 0.001",
    "data": "count = 256",
    "metric": "margin = 0.02",
    "logger": "",
}


def usage(role: Role) -> str:
    """The README's experiment lines: ``[[rewards]]``, ``name = "$name"``, then its options."""
    return "\n".join([role.table, 'name = "$name"', *filter(None, [USAGE_OPTIONS[role.name]])])


@attrs.frozen(kw_only=True)
class PluginNames:
    """Every spelling of the plugin's name the templates use, for a component called ``name``."""

    role: str
    name: str  # the registry name and entry-point name: "center-mass"

    @property
    def values(self) -> dict[str, str]:
        key = self.name.replace("-", "_")
        role = ROLES[self.role]
        values = {"name": self.name, "key": key, "module": f"ddrl_{key}", "package": f"ddrl-{self.name}",
                  "cls": "".join(part.capitalize() for part in self.name.split("-")), "role": role.name,
                  "role_title": role.title, "role_plural": role.plural, "hook": role.hook, "suite": role.suite,
                  "framework_version": __version__}
        values["usage"] = string.Template(usage(role)).substitute(values)
        values["py_modules"] = f'"{values["module"]}"'
        return values


def check_name(role: str, name: str) -> None:
    """A usable registry name, not taken in ``role`` by an installed plugin."""
    if not NAME.fullmatch(name):
        raise UserError(f"new-plugin: '{name}' cannot be a plugin name: use lower-case letters, digits and "
                        "single hyphens, starting with a letter (e.g. center-mass)")
    registry = load_registry(strict=False)
    if name in registry.names(role):
        entry = registry.get(role, name)
        raise UserError(f"new-plugin: {entry.component} already exists: pick another name, or an "
                        "experiment could not tell the two apart")


def render(template: str, values: dict[str, str]) -> str:
    return string.Template((TEMPLATES / f"{template}.tmpl").read_text()).substitute(values)


def write_plugin(role: str, name: str, directory: str | Path | None = None, diffusers: str | None = None) -> Path:
    """Write the package of a ``role`` component called ``name``; returns its folder (default
    ``./ddrl-<name>``, which must not exist or be empty). ``diffusers``: a diffusers pipeline class,
    for a policy that is a backbone of it."""
    if role not in ROLES:
        raise UserError(f"new-plugin: unknown role '{role}'; roles: {', '.join(ROLES)}")
    if diffusers is not None and role != "policy":
        raise UserError(f"new-plugin: --diffusers writes a policy (a backbone of a diffusers pipeline), not a {role}")
    check_name(role, name)
    values = PluginNames(role=role, name=name).values
    folder = Path(directory) if directory is not None else Path(values["package"])
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise UserError(f"new-plugin: {folder} exists and is not an empty folder: choose another with "
                        "--directory, or remove it")
    if diffusers is None:
        files = package_files(values, role, f"test_{role}")
    else:
        files = backbone_files(recipe_for(diffusers), values)
    for relative, text in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return folder


def package_files(values: dict[str, str], module: str, test: str) -> dict[str, str]:
    """What every package has, with the plugin's module and its test from the templates ``module``
    and ``test``."""
    return {
        "pyproject.toml": render("pyproject.toml", values),
        "README.md": render("README.md", values),
        f"{values['module']}.py": render(f"{module}.py", values),
        f"tests/test_{values['module']}.py": render(f"{test}.py", values),
        ".gitignore": render("gitignore", values),
        ".github/workflows/test.yml": render("workflow.yml", values),
    }


def backbone_files(recipe: Recipe, values: dict[str, str]) -> dict[str, str]:
    """A diffusers backbone's package: the hook module, its tests, the implementation, a tiny config."""
    values = {**values, **recipe_values(recipe, values)}
    return {
        **package_files(values, "diffusers_hook", "test_diffusers_policy"),
        f"{values['impl_module']}.py": render("diffusers_policy.py", values),
        f"{values['name']}-tiny.toml": render("diffusers_tiny.toml", values),
    }
