"""Everything about an experiment that can be known before any work, checked before any work.

Every command (``train``, ``pretrain``, ``doctor``, ``compare``) calls :func:`validate_experiment`
after the file is structured (types and value ranges: ``running.config``) and before it
pretrains, builds a component or writes a file. It checks, each error naming the file and the key:

* every component's name (an unknown one with a did-you-mean, and the plugin that has it when the
  environment left that plugin out) and its options: names, types and the validators of its
  option class, without building it;
* the packages a component declares it needs (a logger's optional extra, e.g. tensorboard);
* the sampler and the policy: when both declare their forward process (``register(...,
  forward_process="ddpm")``), the sampler must sample the policy's;
* ``train.trained_denoising_steps`` against the sampler's step count (the sampler is built: a
  sampler is a few numbers);
* the output folder: not a file, writable, and holding no other run (a run there is continued
  only by ``--resume`` with the same config).

It returns the experiment with the plugin and distribution of each component
(:class:`~ddrl_framework.running.config.ResolvedExperiment`), which the run records in its
``config.json``.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from ddrl_framework.errors import PluginError, UserError
from ddrl_framework.options import key_error
from ddrl_framework.registry import Entry, Registry
from ddrl_framework.roles import ROLES
from ddrl_framework.running.config import Experiment, ResolvedExperiment
from ddrl_framework.running.run_dir import (
    CHOOSE_ANOTHER,
    check_output_dir,
    distribution_of,
    recorded_components,
)


@attrs.frozen(kw_only=True)
class Section:
    """One component of an experiment, as the file names it."""

    key: str  # the Experiment field: "policy", "rewards", ...
    where: str  # how messages name the table: "[policy]", "[[rewards]] #2"
    role: str  # the registry role
    name: str
    options: Mapping[str, Any]


def sections(experiment: Experiment) -> Iterator[Section]:
    """Every component of ``experiment``, in the order of the file's tables."""
    for role in ROLES.values():
        value = getattr(experiment, role.config_key)
        for i, spec in enumerate(value if role.many else [value]):
            yield Section(key=role.config_key, where=role.where(i), role=role.name, name=spec.name,
                          options=spec.options)
        if role.name == "data":
            yield from _other_data_sections(experiment)


def _other_data_sections(experiment: Experiment) -> Iterator[Section]:
    """``[pretrain.data]`` and ``[eval_data]``: data sources beside ``[data]``, when given."""
    for key, where, spec in (("pretrain_data", "[pretrain.data]", experiment.pretrain.data),
                             ("eval_data", "[eval_data]", experiment.eval_data)):
        if spec is not None:
            yield Section(key=key, where=where, role="data", name=spec.name, options=spec.options)


def validate_experiment(experiment: Experiment, registry: Registry, source: str, *,
                        writes_output: bool = True, resume: bool = False) -> ResolvedExperiment:
    """``experiment`` checked as the module docstring says, with its components' provenance.
    ``writes_output``: the command writes into ``output_dir`` (``train``, each run of ``compare``)."""
    found = [(section, _entry(registry, section, experiment, source)) for section in sections(experiment)]
    entries = {section.key: entry for section, entry in reversed(found)}  # the first of each key
    check_pairing(entries["policy"], entries["sampler"], registry, source)
    provenance: dict[str, Any] = {}
    for section, entry in found:
        registry.check(section.role, section.name, section.options, f"{source}: {section.where}")
        check_requirements(entry, f"{source}: {section.where}")
        if ROLES[section.role].many:
            provenance.setdefault(section.key, []).append(entry.provenance())
        else:
            provenance[section.key] = entry.provenance()
    check_trained_steps(experiment, registry, source)
    if writes_output:
        check_output_folder(experiment, source, resume)
    values = {f.name: getattr(experiment, f.name) for f in attrs.fields(Experiment)}
    return ResolvedExperiment(**values, provenance=provenance)


def _entry(registry: Registry, section: Section, experiment: Experiment, source: str) -> Entry:
    """The section's registry entry; an unknown name that a run in the output folder used names
    the distribution that provided it then (from that run's ``config.json``)."""
    try:
        return registry.get(section.role, section.name, f"{source}: {section.where} name")
    except PluginError as error:
        used = recorded_distribution(Path(experiment.output_dir), section.name)
        if used is None:
            raise
        raise PluginError(f"{error} The run in {experiment.output_dir} used '{section.name}' from the "
                          f"distribution {used}: install it (pip install {used.split()[0]}).") from None


def recorded_distribution(folder: Path, name: str) -> str | None:
    """``"<distribution> <version>"`` that provided the component ``name`` to the run in ``folder``."""
    try:
        records = recorded_components(folder)
    except (OSError, ValueError, AttributeError):  # whatever the folder holds, this is only a hint
        return None
    used = [distribution_of(item) for _, item in records if isinstance(item, dict) and item.get("name") == name]
    return next((d for d in used if d), None)


def check_requirements(entry: Entry, where: str) -> None:
    """The modules a factory declares in ``requires`` (``{"module": "install hint"}``) can be
    imported (found, not imported: nothing heavy loads here)."""
    for module, hint in getattr(entry.factory, "requires", {}).items():
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise UserError(key_error(where, f"{entry.component} needs the package '{module.split('.')[0]}', "
                                             f"which is not installed: {hint}"))


def check_pairing(policy: Entry, sampler: Entry, registry: Registry, source: str) -> None:
    """The sampler samples the policy's forward process (when both declare theirs)."""
    have, need = policy.forward_process, sampler.forward_process
    if have is None or need is None or have == need:
        return
    fitting = [e.name for e in registry.entries() if e.role == "sampler" and e.forward_process == have]
    raise UserError(key_error(
        f"{source}: [sampler] name",
        f"the sampler '{sampler.name}' samples a '{need}' forward process, but "
        f"the policy '{policy.name}' ({policy.origin}) has a '{have}' one: use a sampler for '{have}' "
        f"({', '.join(fitting) or 'none is installed'}), or a policy with a '{need}' process."))


def check_trained_steps(experiment: Experiment, registry: Registry, source: str) -> None:
    """``train.trained_denoising_steps`` are steps of the sampler (built for its step count)."""
    steps = experiment.train.trained_denoising_steps
    if steps is None:
        return
    spec = experiment.sampler
    count = registry.build("sampler", spec.name, spec.options, f"{source}: [sampler]").num_steps
    check_steps_in_range(steps, count, spec.name, source)


def check_steps_in_range(steps: Sequence[int], count: int, sampler: str, source: str) -> None:
    """The one check of trained steps against the sampler's ``count`` steps (before any work, and
    by the trainer on the steps it trains, the sampler's default ones included)."""
    outside = [k for k in steps if not 0 <= k < count]
    if outside:
        raise UserError(key_error(f"{source}: train.trained_denoising_steps",
                                  f"{outside} out of range: the sampler '{sampler}' has {count} denoising "
                                  f"steps, 0..{count - 1}"))


def check_output_folder(experiment: Experiment, source: str, resume: bool) -> None:
    """``output_dir`` can be a run folder: no file in its way, writable, and no other run in it
    (``--resume`` continues the run of the same config there)."""
    check_writable_folder(Path(experiment.output_dir), source)
    check_output_dir(Path(experiment.output_dir), experiment, resume)


def check_writable_folder(output: Path, source: str) -> None:
    """``output`` is a folder, or can be made one: no file in its way, and writable."""
    where = f"{source}: output_dir = '{output}'"
    for folder in (output, *output.parents):
        if not folder.exists():
            continue
        if not folder.is_dir():
            raise UserError(key_error(where, f"{folder} is a file, not a folder; {CHOOSE_ANOTHER}"))
        if not os.access(folder, os.W_OK | os.X_OK):
            raise UserError(key_error(where, f"cannot write into {folder}; {CHOOSE_ANOTHER}"))
        return


def resume_note(experiment: Experiment) -> str | None:
    """What ``--resume`` does when there is no run to resume (None: there is one)."""
    output = Path(experiment.output_dir)
    if (output / "config.json").is_file():
        return None
    return f"--resume: {output} holds no run yet, so this starts a new one there"
