"""docs/results.md is what benchmarks/results.py computes from the committed raw results: never
edited by hand, never stale against its data."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).parents[2] / "benchmarks"


def results_module():
    sys.path.insert(0, str(BENCHMARKS))  # results.py imports like the other scripts
    spec = importlib.util.spec_from_file_location("results", BENCHMARKS / "results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_results_page_is_what_the_committed_data_gives():
    results = results_module()
    assert results.PAGE.read_text() == results.render(), (
        "docs/results.md differs from what its raw results give: run python benchmarks/results.py")


def test_a_changed_raw_number_changes_the_page(tmp_path, monkeypatch):
    """The page is computed: one run's final FD edited in a copy of the raw results moves it."""
    results = results_module()
    copy = tmp_path / "results"
    shutil.copytree(results.RESULTS, copy)
    monkeypatch.setattr(results, "RESULTS", copy)
    monkeypatch.setattr(results, "INDEX", copy / "index.toml")
    before = results.render()
    name = results.benchmarks()[0]["name"]
    run = json.loads((copy / name / "compare.json").read_text())["runs"][0]
    evals = copy / name / run["dir"] / "eval.jsonl"
    lines = [json.loads(line) for line in evals.read_text().splitlines()]
    lines[-1]["fd"] += 1000.0
    evals.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert results.render() != before


def test_every_published_benchmark_names_its_commit_and_hypotheses():
    results = results_module()
    page = results.PAGE.read_text()
    for entry in results.benchmarks():
        measured = results.stamp(results.RESULTS / entry["name"])
        assert len(measured["commit"]) == 40 and measured["command"]
        assert f"At commit `{measured['commit'][:10]}`" in page
        assert (results.RESULTS / entry["hypotheses"]).read_text().startswith("Written on ")
