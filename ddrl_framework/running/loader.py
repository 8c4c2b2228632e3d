"""The one loader of experiment files, shared by every command (``train``, ``pretrain``,
``doctor``, ``compare``).

A file is read once: TOML, then the ``--set KEY=VALUE`` overrides. Every experiment made from it
is structured by :func:`~ddrl_framework.running.config.structure_experiment`, which first refuses
a renamed key (:func:`~ddrl_framework.running.config.check_renamed_keys`). Everything but the
``[compare]`` table is the *base* experiment, so a comparison file is a valid experiment for every
command; the ``[compare]`` table (:class:`~ddrl_framework.running.config.CompareConfig`) is
ignored unless an arm is asked for. The experiment of one arm x beta x seed takes the arm's
regularizer table (with ``beta`` when there is one), then the arm's ``set`` overrides, the seed,
and the run folder ``<output_dir>/runs/<arm>[-beta<b>]-seed<seed>``. ``ddrl compare`` runs every
such run; ``ddrl train FILE --arm A [--beta B]`` runs one of them in the same folder, so a later
``ddrl compare`` finds it finished, or resumes it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from ddrl_framework.errors import UserError
from ddrl_framework.options import accepts_option, did_you_mean
from ddrl_framework.registry import Registry, load_registry
from ddrl_framework.roles import BETA_OPTION
from ddrl_framework.running.config import (
    Arm,
    CompareConfig,
    Experiment,
    apply_override,
    parse_override,
    read_toml,
    structure,
    structure_experiment,
)


@attrs.frozen(kw_only=True)
class RunSpec:
    """One run of a comparison: an arm, its beta (None: the arm's table as it is), a seed."""

    name: str
    arm: str
    beta: float | None
    seed: int
    experiment: Experiment

    @property
    def directory(self) -> Path:
        return Path(self.experiment.output_dir)

    def manifest(self) -> dict[str, Any]:
        """The run as ``compare.json`` lists it."""
        return {"name": self.name, "arm": self.arm, "beta": self.beta, "seed": self.seed,
                "dir": f"runs/{self.name}"}


def run_name(arm: str, beta: float | None, seed: int) -> str:
    """``<arm>[-beta<b>]-seed<seed>``: the run's folder under ``<output_dir>/runs``."""
    return arm + ("" if beta is None else f"-beta{beta:g}") + f"-seed{seed}"


@attrs.frozen(kw_only=True)
class ExperimentFile:
    """An experiment file after its overrides: the base experiment and its ``[compare]`` table."""

    source: str  # the file's path, as error messages name it
    data: Mapping[str, Any]  # the file's values after the overrides, without [compare]
    compare_data: Mapping[str, Any] | None  # the [compare] table as written (None: none)
    base: Experiment  # everything but [compare]

    def comparison(self) -> CompareConfig:
        """The ``[compare]`` table, validated (a file without one: the defaults)."""
        return structure(self.compare_data or {}, CompareConfig, self.source, "compare.")

    def run(self, arm: Arm, beta: float | None, seed: int) -> RunSpec:
        """The validated experiment of one arm x beta x seed, as ``ddrl compare`` runs it."""
        data = copy.deepcopy(dict(self.data))
        data["regularizer"] = dict(arm.regularizer) | ({} if beta is None else {BETA_OPTION: beta})
        for text in arm.set:
            apply_override(data, *parse_override(text))
        name = run_name(arm.name, beta, seed)
        data["seed"] = seed + arm.seed_offset
        data["output_dir"] = str(Path(self.base.output_dir) / "runs" / name)
        experiment = structure_experiment(data, f"{self.source} (arm '{arm.name}', run {name})")
        return RunSpec(name=name, arm=arm.name, beta=beta, seed=seed, experiment=experiment)

    def runs(self) -> list[RunSpec]:
        """Every arm x beta x seed of the ``[compare]`` table, each validated."""
        compare = self.comparison()
        runs = [self.run(arm, beta, seed)
                for arm in compare.arms for beta in (arm.betas or (None,)) for seed in compare.seeds]
        names = [r.name for r in runs]
        if len(set(names)) != len(names):
            raise UserError(f"{self.source}: two [[compare.arms]] share a name; give each its own")
        return runs

    def arm(self, name: str) -> Arm:
        """The arm called ``name`` (a UserError with a did-you-mean when there is none)."""
        if self.compare_data is None:
            raise UserError(f"{self.source}: --arm {name}: this file has no [compare] table, so it has "
                            "no arms; drop --arm to run the file as it is, or add [[compare.arms]] "
                            "tables (docs/comparisons.md)")
        arms = {arm.name: arm for arm in self.comparison().arms}
        if name not in arms:
            raise UserError(f"{self.source}: no arm '{name}' in [compare].{did_you_mean(name, arms)} "
                            f"Its arms: {', '.join(arms)}.")
        return arms[name]

    def arm_run(self, name: str, beta: float | None = None, registry: Registry | None = None) -> RunSpec:
        """The run of ``--arm NAME [--beta B]``, with the file's top-level ``seed``. ``beta`` may be
        any value; without it, the arm's one beta (several: a UserError listing them)."""
        arm = self.arm(name)
        if beta is None:
            if len(arm.betas) > 1:
                raise UserError(
                    f"{self.source}: arm '{arm.name}' sweeps betas {', '.join(f'{b:g}' for b in arm.betas)}; "
                    f"pick one with --beta (e.g. --beta {arm.betas[0]:g}), or any other value for a new point")
            return self.run(arm, arm.betas[0] if arm.betas else None, self.base.seed)
        registry = registry or load_registry()
        where = f"{self.source}: [[compare.arms]] '{{}}' regularizer"
        if not _has_beta(arm.regularizer, registry, where.format(arm.name)):
            with_beta = [a.name for a in self.comparison().arms
                         if _has_beta(a.regularizer, registry, where.format(a.name))]
            raise UserError(
                f"{self.source}: --beta {beta:g}: the regularizer '{arm.regularizer.get('name')}' of arm "
                f"'{arm.name}' has no beta option; drop --beta, or pick an arm with one "
                f"({', '.join(with_beta) or 'none in this file'})")
        return self.run(arm, beta, self.base.seed)

    def experiment(self, arm: str | None = None, beta: float | None = None,
                   registry: Registry | None = None) -> Experiment:
        """What ``train``, ``pretrain`` and ``doctor`` run: the file as it is (``[compare]``
        ignored), with ``regularizer.beta = beta`` when given; or, with ``arm``, that arm's run
        exactly as ``ddrl compare`` would run it (see :meth:`arm_run`). ``registry`` (loaded when
        needed) tells which regularizers take a beta."""
        if arm is not None:
            return self.arm_run(arm, beta, registry).experiment
        return self.base if beta is None else self.with_beta(beta, registry)

    def with_beta(self, beta: float, registry: Registry | None = None) -> Experiment:
        """The base experiment with ``regularizer.beta = beta`` (``--beta`` without ``--arm``)."""
        regularizer = {"name": self.base.regularizer.name, **self.base.regularizer.options}
        if not _has_beta(regularizer, registry or load_registry(), f"{self.source}: [regularizer]"):
            arms = "; or pick an arm with --arm" if self.compare_data is not None else ""
            raise UserError(
                f"{self.source}: --beta {beta:g}: the regularizer '{regularizer['name']}' has no beta "
                "option; drop --beta, or choose a regularizer with one (e.g. --set "
                f"regularizer.name=forward-kl-data){arms}")
        data = copy.deepcopy(dict(self.data))
        data["regularizer"] = regularizer | {BETA_OPTION: beta}
        return structure_experiment(data, self.source)


def _has_beta(regularizer: Mapping[str, Any], registry: Registry, where: str) -> bool:
    """Whether the regularizer table's plugin takes a ``beta`` option (``where`` names the table)."""
    name = regularizer.get("name")
    if not isinstance(name, str):
        raise UserError(f"{where}: a regularizer table needs a 'name': the registry name of a plugin "
                        "(see `ddrl plugins`)")
    return accepts_option(registry.get("regularizer", name, f"{where} name").factory, BETA_OPTION)


def _refuse_regularizer_options_without_a_table(source: str, overridden: Mapping[str, Any] | None) -> None:
    """``--set regularizer.KEY=...`` on a file with no ``[regularizer]`` table makes a table with no
    name: point at what sets an arm's regularizer instead."""
    if overridden is None or "name" in overridden:
        return
    raise UserError(f"{source}: --set regularizer.{next(iter(overridden), '')}: the file has no "
                    "[regularizer] table to change. An arm's regularizer is its [[compare.arms]] table: set "
                    "its beta with --arm ARM --beta B, or name the regularizer too (--set regularizer.name=...)")


def load_file(path: str | Path, overrides: Sequence[str] = ()) -> ExperimentFile:
    """Read an experiment file, apply the ``--set`` overrides, refuse renamed keys, and validate
    its base experiment (everything but ``[compare]``)."""
    source = str(path)
    data = read_toml(path)
    had_regularizer = "regularizer" in data
    for text in overrides:
        apply_override(data, *parse_override(text))
    if not had_regularizer:
        _refuse_regularizer_options_without_a_table(source, data.get("regularizer"))
    compare = data.pop("compare", None)
    base = structure_experiment(data, source)  # refuses renamed keys first, as for every arm's run
    file = ExperimentFile(source=source, data=data, compare_data=compare, base=base)
    if compare is not None:
        file.comparison()  # a typo in [compare] is an error for every command, not only `compare`
    return file


def load_experiment(path: str | Path, overrides: Sequence[str] = (), *, arm: str | None = None,
                    beta: float | None = None, registry: Registry | None = None) -> Experiment:
    """:meth:`ExperimentFile.experiment` of the file at ``path`` after its ``overrides``."""
    return load_file(path, overrides).experiment(arm, beta, registry)
