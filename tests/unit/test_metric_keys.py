"""Each metric declares its keys (direction, range, margin) and the comparison reads the
declarations of the metrics a comparison ran, with ``[[compare.metrics]]`` over them: the
comparison package names no built-in metric's key. (The metric contract's checks of the
declarations fail on broken metrics in tests/contracts/test_contract_suites.py.)"""

from __future__ import annotations

import ast
import math
import re
import shutil
from pathlib import Path

import pytest

from ddrl_framework.comparison.metric_keys import declared_keys, facts, margin_of
from ddrl_framework.comparison.verdicts import rules
from ddrl_framework.metric_key import MetricKey
from tests.conftest import registry

COMPARISON = Path(__file__).parents[2] / "ddrl_framework" / "comparison"
OPTIONS = {"held-out-reward": {"reward": {"name": "brightness"}}}  # its one required option


def built_in_keys() -> set[str]:
    """The key names every built-in metric declares with its default options."""
    tables = [{"name": entry.name, **OPTIONS.get(entry.name, {})} for entry in registry().entries()
              if entry.role == "metric" and entry.factory.__module__.startswith("ddrl_plugins.")]
    return set(declared_keys(tables, registry())) - {"reward_mean"}  # the evaluator's own key


def strings_in(source: str) -> set[str]:
    """Every string constant of a module, f-string pieces included."""
    return {node.value for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)}


def named_keys(folder: Path, keys: set[str]) -> dict[str, set[str]]:
    """Each module of ``folder`` that holds a key of ``keys`` as a string, or a prefix that ends in
    ``_`` of one (``"fd_"``, ``"heldout_"``), and which."""
    prefixes = {key[:i + 1] for key in keys for i, c in enumerate(key) if c == "_"}
    found = {path.name: strings_in(path.read_text()) & (keys | prefixes) for path in sorted(folder.glob("*.py"))}
    return {name: names for name, names in found.items() if names}


def test_the_built_in_metrics_declare_the_keys_the_comparison_judges():
    keys = built_in_keys()
    assert {"fd", "class_entropy", "recognizable", "hack_rate", "pairwise_distance", "drift_kl",
            "fd_clip", "heldout_brightness"} <= keys


def test_the_comparison_names_no_built_in_metric_key():
    assert named_keys(COMPARISON, built_in_keys()) == {}


def test_a_key_named_in_the_comparison_is_found(tmp_path):
    copy = Path(shutil.copytree(COMPARISON, tmp_path / "comparison", ignore=shutil.ignore_patterns("__pycache__")))
    tables = copy / "report_tables.py"
    tables.write_text(tables.read_text() + '\nFIDELITY = "fd"\nHELD_OUT = f"heldout_{FIDELITY}"\n')
    assert named_keys(copy, built_in_keys()) == {"report_tables.py": {"fd", "heldout_"}}


def test_the_digits_metrics_keep_their_directions_ranges_and_margins():
    declared = declared_keys([{"name": "frechet-distance"}, {"name": "diversity"}, {"name": "recognizable"},
                              {"name": "hack-rate"}, {"name": "drift"},
                              {"name": "frechet-distance", "weighting": "exp-tilt", "key": "fd_exp_tilt"}], registry())
    summary = {k: (facts(k, declared).better, facts(k, declared).bounds, margin_of(k, None, declared))
               for k in ("fd", "fd_exp_tilt", "class_entropy", "recognizable", "hack_rate", "drift_kl", "reward_mean")}
    assert summary == {
        "fd": ("lower", (0.0, math.inf), (30.0, "default")),
        "fd_exp_tilt": ("lower", (0.0, math.inf), (None, "none")),  # a reweighted FD: its own scale
        "class_entropy": ("higher", (0.0, 1.0), (0.05, "default")),
        "recognizable": ("higher", (0.0, 1.0), (0.05, "default")),
        "hack_rate": ("lower", (0.0, 1.0), (0.05, "default")),
        "drift_kl": (None, (0.0, math.inf), (None, "none")),
        "reward_mean": ("higher", (-math.inf, math.inf), (None, "none")),
    }


def test_compare_metrics_override_a_declaration_and_a_metric_not_run_declares_nothing():
    declared = declared_keys([{"name": "frechet-distance"}], registry())
    compare = {"metrics": [{"key": "fd", "better": "higher", "margin": 5.0}]}
    (fd,) = [r for r in rules(compare, ["reward_mean", "fd", "recognizable"], declared) if r.key == "fd"]
    assert (fd.higher_is_better, fd.margin, fd.margin_source, fd.bounds) == (True, 5.0, "config", (0.0, math.inf))
    assert "recognizable" not in {r.key for r in rules({}, ["recognizable"], declared)}  # no recognizable ran
    assert declared_keys([{"name": "no-such-metric"}], registry()) == {"reward_mean": declared["reward_mean"]}


@pytest.mark.parametrize("key, problem", [
    (MetricKey("x", "bigger"), r"better = 'bigger'"),
    (MetricKey("x", "higher", 1.0, 0.0), r"range \[1.0, 0.0\] is empty"),
    (MetricKey("x", "lower", margin=-0.1), r"margin = -0.1"),
])
def test_a_malformed_declaration_says_what_is_wrong(key, problem):
    assert any(re.search(problem, p) for p in key.problems()), key.problems()
    assert MetricKey("x", "higher", 0.0, 1.0, margin=0.0).problems() == []
