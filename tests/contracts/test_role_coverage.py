"""Every built-in component of every role has its role's contract suite run on it: each has a line
in contract_cases.CONTRACT_TESTS naming a collected test class that subclasses the suite and names
the component (in itself or a base class of its file). Read from the test files' source, so
nothing heavy is imported here."""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path

from contract_cases import CONTRACT_TESTS

from ddrl_framework.registry import BUILTIN_DISTRIBUTION, load_registry
from ddrl_framework.roles import ROLES

TESTS = Path(__file__).parents[1]  # tests/: contract_cases' paths are relative to it


def builtin_components() -> set[tuple[str, str]]:
    """``(role, name)`` of every component the ddrl-framework distribution registers."""
    registry = load_registry(env={"DDRL_DISABLE_PLUGIN_AUTOLOAD": "1"})
    return {(e.role, e.name) for e in registry.entries()
            if e.distribution is not None and e.distribution.name == BUILTIN_DISTRIBUTION}


def uncovered(builtins: set[tuple[str, str]], cases: Mapping[tuple[str, str], str]) -> list[str]:
    """The built-ins without a contract test, as ``role 'name'``."""
    return [f"{role} '{name}'" for role, name in sorted(builtins - set(cases))]


def class_chain(path: Path, name: str) -> tuple[list[ast.ClassDef], str | None]:
    """The module-level class ``name`` of ``path`` and its bases defined there (first base first),
    and the name of the first base defined elsewhere (the suite)."""
    classes = {node.name: node for node in ast.parse(path.read_text()).body if isinstance(node, ast.ClassDef)}
    chain: list[ast.ClassDef] = []
    while name in classes:
        chain.append(classes[name])
        bases = [base.id for base in classes[name].bases if isinstance(base, ast.Name)]
        name = bases[0] if bases else None
    return chain, name


def case_problem(role: str, name: str, test: str) -> str | None:
    """Why ``test`` ("file::Class") is not a run of ``role``'s suite on ``name`` (None: it is)."""
    file, _, cls = test.partition("::")
    if not (TESTS / file).is_file():
        return f"{role} '{name}': {test}: no file tests/{file}"
    chain, suite = class_chain(TESTS / file, cls)
    if not chain or not cls.startswith("Test"):
        return f"{role} '{name}': {test}: no test class {cls} in tests/{file}"
    if suite != ROLES[role].suite:
        return f"{role} '{name}': {test} runs {suite}, not {ROLES[role].suite}"
    if name not in {node.value for c in chain for node in ast.walk(c) if isinstance(node, ast.Constant)}:
        return f"{role} '{name}': {test} never names '{name}'"
    return None


def misdeclared(builtins: set[tuple[str, str]], cases: Mapping[tuple[str, str], str]) -> list[str]:
    """The lines of ``cases`` that name no built-in, or no run of the role's suite on it."""
    stale = [f"{role} '{name}': no such built-in" for role, name in sorted(set(cases) - builtins)]
    checked = sorted((key, test) for key, test in cases.items() if key in builtins)
    return stale + [p for (role, name), test in checked if (p := case_problem(role, name, test))]


def test_every_builtin_runs_its_roles_contract_suite():
    assert uncovered(builtin_components(), CONTRACT_TESTS) == [], (
        "add the built-in's contract test and its line to tests/contracts/contract_cases.py")


def test_every_contract_case_is_a_run_of_its_roles_suite_on_a_builtin():
    assert misdeclared(builtin_components(), CONTRACT_TESTS) == []


def test_a_builtin_whose_line_is_removed_is_reported():
    cases = {key: test for key, test in CONTRACT_TESTS.items() if key != ("metric", "drift")}
    assert uncovered(builtin_components(), cases) == ["metric 'drift'"]


def test_a_line_naming_another_suite_another_component_or_no_class_is_reported():
    builtins = builtin_components()
    cases = {("policy", "unet2d"): "contracts/test_contracts.py::TestBrightness",
             ("reward", "brightness"): "contracts/test_contracts.py::TestJpegCompressibility",
             ("reward", "jpeg-compressibility"): "contracts/test_contracts.py::TestNoSuchClass",
             ("reward", "not-built-in"): "contracts/test_contracts.py::TestBrightness"}
    assert misdeclared(builtins, cases) == [
        "reward 'not-built-in': no such built-in",
        "policy 'unet2d': contracts/test_contracts.py::TestBrightness runs RewardModelContract, not PolicyContract",
        "reward 'brightness': contracts/test_contracts.py::TestJpegCompressibility never names 'brightness'",
        "reward 'jpeg-compressibility': contracts/test_contracts.py::TestNoSuchClass: no test class TestNoSuchClass in "
        "tests/contracts/test_contracts.py",
    ]
