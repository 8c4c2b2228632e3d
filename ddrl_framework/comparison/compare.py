"""``ddrl compare``: one base experiment, several regularizer arms, each swept over betas and
seeds, under the same pretrained reference, seeds, data order, budget and evaluation noise.

The ``[compare]`` table of the experiment file::

    [compare]
    seeds = [0, 1, 2]
    [[compare.arms]]
    name = "reverse-kl"
    regularizer = { name = "reverse-kl" }
    betas = [0.003, 0.01]
    set = ["train.advantage_normalization=raw"]   # overrides for this arm only

The file is read by the one loader (:mod:`ddrl_framework.running.loader`), which makes each run's
experiment and names its folder ``<output_dir>/runs/<arm>[-beta<beta>]-seed<seed>``; ``ddrl train
FILE --arm A --beta B`` trains the same run in the same folder. A finished run is never rerun and
an interrupted one resumes. Then the evaluation spread and the target reference values are measured
and ``report.md`` is written (:mod:`ddrl_framework.comparison.report`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import torch
from tqdm import tqdm

from ddrl_framework.comparison.floors import measure_floors
from ddrl_framework.comparison.metric_keys import declared_keys
from ddrl_framework.comparison.verdicts import check_declared
from ddrl_framework.errors import UserError
from ddrl_framework.kit.io import atomic_write_bytes
from ddrl_framework.registry import Registry, load_registry
from ddrl_framework.running.checkpoint import latest_checkpoint
from ddrl_framework.running.components import build_components, make_evaluator
from ddrl_framework.running.config import CompareConfig, Experiment
from ddrl_framework.running.device import resolve_device
from ddrl_framework.running.loader import RunSpec, load_file
from ddrl_framework.running.pretrain import pretrain_if_needed
from ddrl_framework.running.trainer import Trainer
from ddrl_framework.running.validation import check_writable_folder, validate_experiment

REFERENCES_VERSION = 2  # 2: target floors out of sample (1: resampled from the set scored against)


def load_compare(path: str | Path, overrides: Sequence[str] = (), registry: Registry | None = None
                 ) -> tuple[Experiment, CompareConfig, list[RunSpec]]:
    """The base experiment, the comparison, and every run, each validated before anything runs
    (the one loader, :mod:`ddrl_framework.running.loader`, makes them); the plugins
    (``registry``: loaded once the file is structured, when not given) declare the metrics' keys."""
    file = load_file(path, overrides)
    if file.compare_data is None:
        raise UserError(f"{path}: no [compare] table, so nothing to compare: add one with its seeds and "
                        "[[compare.arms]] (docs/comparisons.md), or run the file as it is with `ddrl train`")
    compare = file.comparison()
    check_declared(compare, str(path), declared_keys(metric_tables(file.base), registry or load_registry()))
    return file.base, compare, file.runs()


def metric_tables(experiment: Experiment) -> list[dict[str, Any]]:
    """The experiment's ``[[metrics]]`` tables: each ``name`` and options."""
    return [{"name": m.name, **m.options} for m in experiment.metrics]


def validate_runs(config: str | Path, base: Experiment, runs: list[RunSpec],
                  registry: Registry) -> tuple[Experiment, list[RunSpec]]:
    """The base experiment and every run checked whole before any work (``running.validation``):
    names, options, pairing, steps, and each run's folder (which holds this run or none)."""
    base = validate_experiment(base, registry, str(config), writes_output=False)
    check_writable_folder(Path(base.output_dir), str(config))
    checked = [attrs.evolve(run, experiment=validate_experiment(
        run.experiment, registry, f"{config} (run {run.name})", resume=True)) for run in runs]
    return base, checked


def beta_unit(experiment: Experiment, registry: Registry) -> str | None:
    """The unit of the run's beta, as its regularizer declares it (an optional ``beta_unit``:
    "nats" for the built-in KLs, "nats" or "paper" for forward-kl-data); None if it does not."""
    spec = experiment.regularizer
    return getattr(registry.build("regularizer", spec.name, spec.options, "[regularizer]"), "beta_unit", None)


def is_finished(run: RunSpec) -> bool:
    checkpoints = run.directory / "checkpoints"
    if not (checkpoints / "latest").is_file():
        return False
    latest = latest_checkpoint(checkpoints)
    return latest is not None and latest.name == f"iter-{run.experiment.train.iterations:06d}"


def execute(run: RunSpec, registry: Registry, show_progress: bool) -> None:
    """Train one run, resuming it if it was interrupted."""
    Trainer(run.experiment, registry, resume=True, show_progress=show_progress).run()


def _execute_in_processes(config: str, overrides: Sequence[str], runs: list[RunSpec], jobs: int) -> None:
    threads = max(1, (os.cpu_count() or 1) // jobs)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "DDRL_NUM_THREADS": str(threads)}
    pending, active = list(runs), []
    bar = tqdm(total=len(runs), desc=f"runs ({jobs} at a time)", unit="run")
    while pending or active:
        while pending and len(active) < jobs:
            run = pending.pop(0)
            command = [sys.executable, "-m", "ddrl_framework", "compare", config, "--only", run.name,
                       "--quiet", *[f"--set={o}" for o in overrides]]
            active.append((run, subprocess.Popen(command, env=env)))
        finished = [(run, process) for run, process in active if process.poll() is not None]
        if not finished:
            time.sleep(0.5)
            continue
        for run, process in finished:
            active.remove((run, process))
            if process.returncode != 0:
                raise UserError(f"run {run.name} failed (exit code {process.returncode}); rerun "
                                "`ddrl compare` to resume it")
            bar.update(1)
    bar.close()


def measure_references(base: Experiment, compare: CompareConfig, registry: Registry) -> dict[str, Any]:
    """The evaluation spread (the reference evaluated on fresh noise, ``evaluation_repeats``
    times) and, out of sample, the metrics each target reweighting of the held-out data would
    score (:mod:`ddrl_framework.comparison.floors`, over ``evaluation_repeats`` half splits)."""
    device = resolve_device(base.train.device)
    parts = build_components(base, registry, device, show_progress=False)
    reference = parts.policy.reference() if parts.needs_reference else None
    evaluator = make_evaluator(parts, reference, base.train, device)
    repeats = [evaluator.evaluate(noise_seed=10_000 + i) for i in range(compare.evaluation_repeats)]
    splits = max(2, compare.evaluation_repeats)
    return {"version": REFERENCES_VERSION, "evaluation_repeats": repeats,
            "targets": measure_floors(evaluator, compare.targets, splits)}


def run_compare(config: str, overrides: Sequence[str], registry: Registry | None = None, *,
                only: str | None = None, show_progress: bool = True) -> Path:
    """Run every unfinished run, then measure the references and write the report. The file is
    structured before the plugins load (``registry``: loaded then when not given)."""
    from ddrl_framework.comparison.report import write_report

    registry = registry or load_registry()
    base, compare, runs = load_compare(config, overrides, registry)
    if only is not None:
        matching = [r for r in runs if r.name == only]
        if not matching:
            raise UserError(f"--only {only}: no such run; runs are {', '.join(r.name for r in runs)}")
        runs = matching
    base, runs = validate_runs(config, base, runs, registry)
    if only is not None:
        execute(runs[0], registry, show_progress)
        return runs[0].directory
    output = Path(base.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    manifest = {"config": str(config), "overrides": list(overrides), "compare": attrs.asdict(compare),
                "runs": [{**r.manifest(), "beta_unit": beta_unit(r.experiment, registry)} for r in runs]}
    atomic_write_bytes(output / "compare.json", json.dumps(manifest, indent=2, default=list).encode())
    pretrain_if_needed(base, registry, show_progress)  # once, before any run needs it
    todo = [r for r in runs if not is_finished(r)]
    if show_progress and len(todo) < len(runs):
        print(f"{len(runs) - len(todo)} of {len(runs)} runs already finished; running the other {len(todo)}")
    if compare.jobs > 1 and len(todo) > 1:
        _execute_in_processes(config, overrides, todo, compare.jobs)
    else:
        for i, run in enumerate(todo):
            if show_progress:
                print(f"[{i + 1}/{len(todo)}] {run.name}", file=sys.stderr)
            execute(run, registry, show_progress)
    references = output / "references.json"
    if not references.is_file() or json.loads(references.read_text()).get("version") != REFERENCES_VERSION:
        values = measure_references(base, compare, registry)
        atomic_write_bytes(references, json.dumps(values, indent=2).encode())
    return write_report(output)


def set_threads_from_env() -> None:
    """Honour ``DDRL_NUM_THREADS`` (set for runs side by side)."""
    if os.environ.get("DDRL_NUM_THREADS"):
        torch.set_num_threads(int(os.environ["DDRL_NUM_THREADS"]))
