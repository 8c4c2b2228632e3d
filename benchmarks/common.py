"""Shared set-up for the benchmark scripts: trainers built from a config, timing helpers."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from ddrl_framework.registry import load_registry
from ddrl_framework.running.config import read_toml, structure_experiment
from ddrl_framework.running.trainer import Trainer

DEFAULT_CONFIG = "configs/digits-brightness-ddrl.toml"


def make_trainer(config: str, folder: str, regularizer: dict[str, Any], train: dict[str, Any] | None = None) -> Trainer:
    """CONFIG with this regularizer table, freshly initialized weights (timing does not depend on
    them), no grids and no evaluation, on the CPU."""
    data = read_toml(config)
    data.pop("compare", None)
    data["regularizer"] = regularizer
    data["metrics"] = []
    data["output_dir"] = folder
    data.setdefault("pretrain", {})["optimizer_steps"] = 0
    data.setdefault("train", {}).update(grid_samples=0, eval_every=0, device="cpu", **(train or {}))
    return Trainer(structure_experiment(data, config), load_registry(), show_progress=False)


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
