"""The role table (``roles.ROLES``) is the one statement of the roles: the hook specs, the
experiment's tables, the protocols, the contract suites and the plugin-independence contract
agree with it, and a component is checked against its role's protocol."""

from __future__ import annotations

import inspect
import tomllib
from pathlib import Path

import attrs
import pytest

from ddrl_framework import hookspecs, testing
from ddrl_framework.errors import UserError
from ddrl_framework.options import accepts_option
from ddrl_framework.protocols import (
    FollowsPipelineSchedule,
    HasDefaultTrainedSteps,
    HasExtraStates,
    HasPosterior,
    HasRewardTerm,
    HasUpdateLoss,
    NamesAScheduler,
    WrapsPipeline,
)
from ddrl_framework.registry import Registry, load_registry, make_plugin_manager
from ddrl_framework.roles import HOOKS, LOSS_PREFIX, POLICY_LOSS_KEY, PRETRAINED_OPTION, ROLES, loss_key
from ddrl_framework.running.components import build_checked
from ddrl_framework.running.guards import CheckedRegularizer
from ddrl_framework.running.config import Experiment

ROOT = Path(__file__).parents[2]


def test_the_hook_specs_are_the_roles_hooks_in_order():
    specs = [name for name, f in vars(hookspecs).items() if inspect.isfunction(f) and hasattr(f, "ddrl_framework_spec")]
    assert specs == HOOKS


@pytest.mark.parametrize("role", ROLES.values(), ids=list(ROLES))
def test_each_roles_table_is_an_experiment_field_of_its_kind(role):
    field = attrs.fields_dict(Experiment)[role.config_key]
    assert str(field.type).startswith("tuple[") == role.many, f"{role.table} against Experiment.{field.name}: {field.type}"


@pytest.mark.parametrize("role", ROLES.values(), ids=list(ROLES))
def test_each_role_names_its_protocol_and_its_contract_suite(role):
    assert inspect.isclass(role.protocol_class()) and role.protocol_class().__name__ == role.protocol
    assert inspect.isclass(getattr(testing, role.suite))


def test_the_plugin_independence_contract_lists_each_roles_folder():
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    independence = next(c for c in contracts if c["id"] == "plugin-roles")
    assert independence["modules"] == [f"ddrl_plugins.{role.folder}" for role in ROLES.values()]
    assert all((ROOT / "plugins" / role.folder / "__init__.py").is_file() for role in ROLES.values())


def test_where_names_a_table_as_the_file_spells_it():
    assert [ROLES["policy"].where(), ROLES["reward"].where(1), ROLES["logger"].table] == [
        "[policy]", "[[rewards]] #2", "[[loggers]]"]


class _NotALoggerPlugin:
    @hookspecs.hookimpl
    def register_loggers(self, register):
        register("not-a-logger", lambda: object())


def test_a_component_that_is_not_its_roles_protocol_is_refused_naming_its_table():
    manager = make_plugin_manager()
    manager.register(_NotALoggerPlugin(), name="not-a-logger")
    with pytest.raises(UserError, match=r"^\[\[loggers\]\] #2: the plugin built a object, which does not implement "
                       r"the Logger protocol \(ddrl_framework.protocols\)$"):
        build_checked(Registry(manager), "logger", "not-a-logger", {}, ROLES["logger"].where(1))


def test_every_built_in_policy_takes_the_option_the_core_sets_to_its_reference():
    """``[pretrain]`` hands the cached reference to the policy as ``PRETRAINED_OPTION``."""
    registry = load_registry()
    refusing = [name for name in registry.names("policy")
                if not accepts_option(registry.get("policy", name).factory, PRETRAINED_OPTION)]
    assert refusing == [], f"policies without a {PRETRAINED_OPTION!r} option: {refusing}"


def test_the_logged_loss_keys_keep_the_names_past_runs_logged():
    """``metrics.jsonl`` of earlier runs (and ``ddrl report`` on them) read these keys."""
    assert loss_key("reverse-kl") == "loss_reverse-kl" and loss_key("x").startswith(LOSS_PREFIX)
    assert POLICY_LOSS_KEY == "loss_policy"


def test_the_optional_capabilities_are_seen_through_the_run_time_guard():
    """The trainer asks with isinstance, on the regularizer as the run wraps it (CheckedRegularizer)."""
    registry = load_registry()

    def checked(name):
        return CheckedRegularizer(registry.build("regularizer", name, {}, "[regularizer]"), name)

    assert isinstance(checked("kl-in-reward"), HasRewardTerm)
    assert not isinstance(checked("reverse-kl"), HasRewardTerm | HasUpdateLoss | HasExtraStates)
    assert isinstance(checked("forward-kl-data"), HasExtraStates)


def test_the_samplers_capabilities_are_what_they_define():
    sampler = load_registry().build("sampler", "ddim-sde", {}, "[sampler]")
    assert isinstance(sampler, NamesAScheduler) and isinstance(sampler, HasPosterior)
    assert isinstance(sampler, HasDefaultTrainedSteps)
    assert not isinstance(testing.FakeSampler(), NamesAScheduler)
    assert isinstance(sampler, FollowsPipelineSchedule)
    assert not isinstance(testing.FakeSampler(), FollowsPipelineSchedule)
    assert isinstance(load_registry().build("policy", "sd3", {}, "[policy]"), WrapsPipeline)
    assert not isinstance(testing.FakePolicy(), WrapsPipeline)
