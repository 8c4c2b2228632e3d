"""A run's folder: its recorded config (with the plugin and distribution of each component), and
the check that a resume continues the same run."""

from __future__ import annotations

import json
from pathlib import Path

import attrs

from ddrl_framework.errors import UserError
from ddrl_framework.kit.cache import config_hash
from ddrl_framework.kit.io import atomic_write_bytes
from ddrl_framework.running.config import (
    Experiment,
    PretrainConfig,
    ResolvedExperiment,
    TrainConfig,
    to_dict,
)

CHOOSE_ANOTHER = "choose another output_dir (--set output_dir=...)"
RESUMABLE_CHANGES = ("train.iterations", "train.device", "train.sharding")  # the results stay the same


def config_changes(stored: dict, current: dict, prefix: str = "") -> list[str]:
    """Keys whose values differ between a run's recorded config and the current one. A key the
    record lacks counts only if its value is not the default (a field added by a newer version)."""
    changed = []
    for key in sorted(set(stored) | set(current)):
        path = f"{prefix}{key}"
        if path in RESUMABLE_CHANGES:
            continue
        if key not in stored:
            if current[key] != config_default(path):
                changed.append(path)
        elif isinstance(stored[key], dict) and isinstance(current.get(key), dict):
            changed += config_changes(stored[key], current[key], f"{path}.")
        elif json.dumps(stored[key], default=list) != json.dumps(current.get(key), default=list):
            changed.append(path)
    return changed


def config_default(path: str):
    """The default of a top-level, ``train.`` or ``pretrain.`` field (a sentinel for any other)."""
    section, _, name = path.rpartition(".")
    cls = {"": Experiment, "train": TrainConfig, "pretrain": PretrainConfig}.get(section)
    field = getattr(attrs.fields(cls), name, None) if cls is not None else None
    if field is None or field.default is attrs.NOTHING:
        return object()
    return json.loads(json.dumps(field.default, default=list))



def run_identity(experiment: Experiment) -> str:
    """A hash of everything a resume must keep the same."""
    data = to_dict(experiment)
    data.pop("loggers")  # where a run is watched is not what it is: a resume may add a logger
    data["train"] = {k: v for k, v in data["train"].items() if f"train.{k}" not in RESUMABLE_CHANGES}
    return config_hash(data)


def check_output_dir(output: Path, experiment: Experiment, resume: bool) -> None:
    """A run folder is only reused by ``--resume`` of the same config."""
    config_file = output / "config.json"
    if not config_file.is_file():
        return
    if not resume:
        raise UserError(f"{output} already holds a run: pass --resume to continue it, or {CHOOSE_ANOTHER}")
    stored = json.loads(config_file.read_text())
    if stored.get("identity") != run_identity(experiment):
        changed = config_changes(stored.get("experiment", {}), to_dict(experiment))
        if changed:
            raise UserError(f"{output} holds a run of a different config ({', '.join(changed)} "
                            f"changed); --resume needs the same config (only {', '.join(RESUMABLE_CHANGES)} "
                            "may change)")


def record_config(output: Path, experiment: Experiment) -> None:
    """``config.json``: the run's identity, its experiment, and (for an experiment checked against
    the registry) which plugin and distribution provided each component, under ``"components"``."""
    output.mkdir(parents=True, exist_ok=True)
    record = {"identity": run_identity(experiment), "experiment": to_dict(experiment)}
    if isinstance(experiment, ResolvedExperiment):
        record["components"] = dict(experiment.provenance)
    atomic_write_bytes(output / "config.json", json.dumps(record, indent=2, default=list).encode())


def recorded_components(folder: Path) -> list[tuple[str, dict]]:
    """``(section, record)`` of each component the run in ``folder`` recorded in its
    ``config.json`` (:func:`record_config`): none when the folder holds no run."""
    config = folder / "config.json"
    if not config.is_file():
        return []
    components = json.loads(config.read_text()).get("components", {})
    return [(key, item) for key, value in components.items()
            for item in (value if isinstance(value, list) else [value])]


def distribution_of(record: dict) -> str | None:
    """``"<distribution> <version>"`` that provided a recorded component (None: not installed)."""
    if not record.get("distribution"):
        return None
    return f"{record['distribution']} {record.get('version', '')}".strip()
