"""A run killed with SIGKILL at any point (mid-rollout, mid-update, mid-checkpoint) and resumed
with ``--resume`` writes the same metrics.jsonl and eval.jsonl as an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

ITERATIONS = 6


def _train(config, *extra, env=None):
    command = [sys.executable, "-m", "ddrl_framework", "train", str(config), "--quiet",
               "--set", f"train.iterations={ITERATIONS}", "--set", "train.checkpoint_every=1",
               "--set", "train.eval_every=2", *extra]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def _lines(path):
    return path.read_text().splitlines() if path.is_file() else []


def _kill_when(process, ready, delay, timeout=120):
    """SIGKILL ``process`` ``delay`` seconds after ``ready()`` first holds; its exit code."""
    deadline = time.monotonic() + timeout
    while not ready() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    time.sleep(delay)
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    return process.wait()


def _comparable(path):
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in _lines(path)]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The uninterrupted run's metrics and evaluations."""
    from tests.conftest import TINY_CONFIG

    folder = tmp_path_factory.mktemp("straight")
    config = folder / "run.toml"
    config.write_text(TINY_CONFIG.format(output_dir=folder / "run", regularizer="forward-kl-data",
                                         regularizer_options="beta = 0.01"))
    process = _train(config)
    assert process.wait() == 0, process.stderr.read()
    return _comparable(folder / "run" / "metrics.jsonl"), _comparable(folder / "run" / "eval.jsonl")


@pytest.mark.slow
@pytest.mark.parametrize("point", ["after-1-iteration", "mid-iteration-2", "late-iteration-3", "twice"])
def test_killed_and_resumed_runs_match_an_uninterrupted_run(tiny_config, straight, point):
    config = tiny_config()
    metrics = config.parent / "run" / "metrics.jsonl"
    kills = {
        "after-1-iteration": [(lambda: len(_lines(metrics)) >= 1, 0.0)],
        "mid-iteration-2": [(lambda: len(_lines(metrics)) >= 2, 0.03)],
        "late-iteration-3": [(lambda: len(_lines(metrics)) >= 3, 0.12)],
        "twice": [(lambda: len(_lines(metrics)) >= 1, 0.05), (lambda: len(_lines(metrics)) >= 4, 0.0)],
    }[point]
    resume = ()
    for ready, delay in kills:
        assert _kill_when(_train(config, *resume), ready, delay) == -signal.SIGKILL
        resume = ("--resume",)
    _resume_and_compare(config, straight)


@pytest.mark.slow
def test_a_kill_halfway_through_a_checkpoint_keeps_the_previous_one(tiny_config, straight):
    config = tiny_config()
    process = _train(config, env={"DDRL_KILL_IN_CHECKPOINT": "iter-000003"})
    assert process.wait() == -signal.SIGKILL
    checkpoints = config.parent / "run" / "checkpoints"
    assert (checkpoints / "latest").read_text() == "iter-000002"
    assert [p.name for p in checkpoints.glob(".iter-000003.tmp")]  # the half-written one
    _resume_and_compare(config, straight)


def _resume_and_compare(config, straight):
    run = config.parent / "run"
    process = _train(config, "--resume")
    assert process.wait() == 0, process.stderr.read()
    expected_metrics, expected_evals = straight
    assert _comparable(run / "metrics.jsonl") == expected_metrics
    assert _comparable(run / "eval.jsonl") == expected_evals
    assert [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith(".")] == []
