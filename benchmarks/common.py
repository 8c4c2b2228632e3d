"""Shared set-up for the benchmark scripts: trainers built from a config through the one loader,
the default config and arm, timing helpers."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from ddrl_framework.registry import load_registry
from ddrl_framework.running.loader import load_experiment, load_file
from ddrl_framework.running.trainer import Trainer

DEFAULT_CONFIG = "configs/digits-brightness.toml"
DEFAULT_ARM = "forward-kl-data"  # DDRL's arm of the default config (beta 10)

# freshly initialized weights (timing does not depend on them), no evaluation metrics, no grids,
# evaluation only at the start and end, on the CPU
BENCHMARK_SETTINGS = ("metrics=[]", "pretrain.optimizer_steps=0", "train.grid_samples=0",
                      "train.eval_every=0", "train.device=cpu")
NO_REGULARIZER = 'regularizer={name="none"}'  # the file's base experiment, unregularized


def arm_of(config: str, arm: str | None = None) -> str | None:
    """The arm a benchmark runs: ``arm`` when given, else DEFAULT_ARM when the config has a
    ``[compare]`` table, else None (the config as it is)."""
    if arm is not None:
        return arm
    return DEFAULT_ARM if load_file(config).compare_data is not None else None


def make_trainer(config: str, folder: str, overrides: Sequence[str] = (), arm: str | None = None) -> Trainer:
    """CONFIG (its arm ``arm``, when given) with the benchmark settings and ``overrides`` (``--set``
    syntax, e.g. ``NO_REGULARIZER``), its output in ``folder`` (in the arm's run folder
    under it when ``arm`` is given)."""
    overrides = [*BENCHMARK_SETTINGS, f"output_dir={folder}", *overrides]
    return Trainer(load_experiment(config, overrides, arm=arm), load_registry(), show_progress=False)


def interleaved_medians(jobs: dict[str, Callable[[], Any]], rounds: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds of each job, running the jobs in turn (so drift hits them alike)."""
    for job in jobs.values():
        for _ in range(warmup):
            job()
    times: dict[str, list[float]] = {name: [] for name in jobs}
    for _ in range(rounds):
        for name, job in jobs.items():
            began = time.perf_counter()
            job()
            times[name].append(time.perf_counter() - began)
    return {name: statistics.median(values) for name, values in times.items()}


def timed_command(command: list[str], env: dict[str, str]) -> float:
    """Seconds ``command`` took as a fresh process; exits with its stderr when it fails."""
    began = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return time.perf_counter() - began
