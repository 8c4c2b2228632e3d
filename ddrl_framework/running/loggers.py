"""The run's ``[[loggers]]`` (TensorBoard, W&B, ...) beside the JSONL files, which are always
written: built from the registry, started on rank 0 (each says where to look), fed every
iteration's record, every evaluation's record and samples, and closed at the end.

A logger that raises stops the run (:class:`TrainingError`, naming its plugin): what was written
before, the JSONL files and checkpoints included, is intact."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from ddrl_framework.errors import TrainingError, UserError
from ddrl_framework.protocols import Logger
from ddrl_framework.registry import Registry
from ddrl_framework.roles import ROLES
from ddrl_framework.running.components import build_checked
from ddrl_framework.running.config import Experiment


class RunLoggers:
    """Every configured logger, called in turn; ``(component, logger)`` pairs."""

    def __init__(self, loggers: Sequence[tuple[str, Logger]] = ()):
        self.loggers = list(loggers)

    def _each(self, method: str, *args: Any) -> list[Any]:
        out = []
        for component, logger in self.loggers:
            try:
                out.append(getattr(logger, method)(*args))
            except (UserError, TrainingError):
                raise
            except Exception as error:
                raise TrainingError(f"{component} raised in {method}: {type(error).__name__}: {error}; the run "
                                    "stopped there; metrics.jsonl, eval.jsonl and the checkpoints are intact") from error
        return out

    def start(self, output_dir: Path, config: Mapping[str, Any]) -> list[str]:
        """Start each logger; the lines saying where to look."""
        return [line for line in self._each("start", output_dir, config) if line]

    def log_metrics(self, values: Mapping[str, Any], step: int, kind: str) -> None:
        self._each("log_metrics", values, step, kind)

    def log_samples(self, name: str, pixels: Tensor, step: int) -> None:
        self._each("log_samples", name, pixels, step)

    def close(self) -> None:
        self._each("close")


def build_loggers(experiment: Experiment, registry: Registry) -> RunLoggers:
    loggers = []
    for i, spec in enumerate(experiment.loggers):
        logger = build_checked(registry, "logger", spec.name, spec.options, ROLES["logger"].where(i))
        loggers.append((registry.get("logger", spec.name).component, logger))
    return RunLoggers(loggers)
