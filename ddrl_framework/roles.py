"""The one table of roles: what a plugin can register, and everything the framework says about each.

A role is read by the registry (its hook, how messages name a component), the config (its table),
the commands (``ddrl plugins``, ``ddrl new-plugin``), the scaffold, the docs and the tests. Nothing
heavy is imported here, so ``ddrl --help`` can read it at once.
"""

from __future__ import annotations

from typing import Any

import attrs


@attrs.frozen(kw_only=True)
class Role:
    """One role: ``Role(name="reward", hook="register_reward_models", ...)``."""

    name: str  # the role string of the registry: "reward"
    hook: str  # the pluggy hook its plugins implement (hookspecs.py)
    title: str  # what a user calls one component: "reward model"
    plural: str  # and several: "reward models"
    protocol: str  # its class in ddrl_framework.protocols: "RewardModel"
    suite: str  # its contract suite in ddrl_framework.testing: "RewardModelContract"
    config_key: str  # its Experiment field and config table: "rewards"
    many: bool = False  # an array of tables ([[rewards]]), else one table ([policy])
    folder: str  # the built-ins' package: ddrl_plugins.<folder>

    @property
    def table(self) -> str:
        """How the config file spells its table: ``[policy]``, ``[[rewards]]``."""
        return f"[[{self.config_key}]]" if self.many else f"[{self.config_key}]"

    def where(self, index: int = 0) -> str:
        """How messages name one of its tables: ``[policy]``, ``[[rewards]] #2`` (index from 0)."""
        return f"{self.table} #{index + 1}" if self.many else self.table

    def protocol_class(self) -> Any:
        """The protocol class (imported now: ``ddrl_framework.protocols`` imports torch)."""
        from ddrl_framework import protocols

        return getattr(protocols, self.protocol)


ROLES: dict[str, Role] = {role.name: role for role in (
    Role(name="policy", hook="register_policies", title="policy", plural="policies", protocol="Policy",
         suite="PolicyContract", config_key="policy", folder="policies"),
    Role(name="sampler", hook="register_samplers", title="sampler", plural="samplers", protocol="Sampler",
         suite="SamplerContract", config_key="sampler", folder="samplers"),
    Role(name="reward", hook="register_reward_models", title="reward model", plural="reward models",
         protocol="RewardModel", suite="RewardModelContract", config_key="rewards", many=True, folder="rewards"),
    Role(name="regularizer", hook="register_regularizers", title="regularizer", plural="regularizers",
         protocol="Regularizer", suite="RegularizerContract", config_key="regularizer", folder="regularizers"),
    Role(name="data", hook="register_data_sources", title="data source", plural="data sources",
         protocol="DataSource", suite="DataSourceContract", config_key="data", folder="data"),
    Role(name="metric", hook="register_metrics", title="metric", plural="metrics", protocol="Metric",
         suite="MetricContract", config_key="metrics", many=True, folder="metrics"),
    Role(name="logger", hook="register_loggers", title="logger", plural="loggers", protocol="Logger",
         suite="LoggerContract", config_key="loggers", many=True, folder="loggers"),
)}
HOOKS = [role.hook for role in ROLES.values()]


# --- the names the core reads in components' options and losses -------------------------------

PRETRAINED_OPTION = "pretrained"
"""The policy option naming a folder that the policy's ``save_pretrained`` wrote, which its plugin
loads back. The core sets it to the cached reference when an experiment pretrains one
(``[pretrain]``), and pretrains none where a config sets it (``running.pretrain``)."""

BETA_OPTION = "beta"
"""The regularizer option that weighs it, where its plugin takes one: ``ddrl compare``'s
``betas`` and ``--beta`` set it, and each run records it (``running.loader``)."""

LOSS_PREFIX = "loss_"
"""What every key of a regularizer's ``loss`` and ``update_loss`` dicts starts with: the trainer
adds them all and logs each under its key in ``metrics.jsonl``."""

POLICY_LOSS_KEY = LOSS_PREFIX + "policy"
"""The trainer's own clipped policy loss in ``metrics.jsonl``, beside the regularizer's keys."""


def loss_key(regularizer_name: str) -> str:
    """The key a regularizer's ``loss`` returns, and ``metrics.jsonl`` logs it under: ``loss_<name>``."""
    return LOSS_PREFIX + regularizer_name
