"""The plugin registry: pluggy hooks fill one table per role, keyed by component name.

Plugins load from the entry-point group ``ddrl_framework``; the built-ins are registered there too.
Environment variables:

* ``DDRL_PLUGINS``: a comma-separated allow-list of third-party plugin names to load
  (the built-ins always load);
* ``DDRL_DISABLE_PLUGIN_AUTOLOAD=1``: load no third-party plugin at all.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from importlib import metadata
from typing import Any

import attrs
import pluggy

from ddrl_framework import hookspecs
from ddrl_framework.errors import PluginError, UserError
from ddrl_framework.options import did_you_mean, structure_options

BUILTIN_DISTRIBUTION = "ddrl-framework"

# role -> (hook name, what a user calls one, and several)
ROLES: dict[str, tuple[str, str, str]] = {
    "policy": ("register_policies", "policy", "policies"),
    "sampler": ("register_samplers", "sampler", "samplers"),
    "reward": ("register_reward_models", "reward model", "reward models"),
    "regularizer": ("register_regularizers", "regularizer", "regularizers"),
    "data": ("register_data_sources", "data source", "data sources"),
    "metric": ("register_metrics", "metric", "metrics"),
}


@attrs.frozen
class Entry:
    role: str
    name: str
    factory: Callable[..., Any]
    plugin: str


@attrs.frozen
class Distribution:
    name: str
    version: str


def _wanted(entry_point: metadata.EntryPoint, env: Mapping[str, str]) -> bool:
    dist = entry_point.dist.name if entry_point.dist else ""
    if dist == BUILTIN_DISTRIBUTION:
        return True
    if env.get("DDRL_DISABLE_PLUGIN_AUTOLOAD", "") not in ("", "0"):
        return False
    allow = env.get("DDRL_PLUGINS")
    return allow is None or entry_point.name in {n.strip() for n in allow.split(",")}


def make_plugin_manager(
    load_entry_points: bool = True, env: Mapping[str, str] | None = None
) -> pluggy.PluginManager:
    """A plugin manager with the hook specs added and the wanted entry points registered."""
    env = os.environ if env is None else env
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    if load_entry_points:
        for entry_point in metadata.entry_points(group=hookspecs.PROJECT):
            if _wanted(entry_point, env):
                _register_entry_point(manager, entry_point)
    return manager


def _register_entry_point(manager: pluggy.PluginManager, entry_point: metadata.EntryPoint) -> None:
    dist = entry_point.dist
    label = f"plugin '{entry_point.name}' ({entry_point.value}"
    label += f", from {dist.name} {dist.version})" if dist else ")"
    if manager.get_plugin(entry_point.name) is not None:
        return  # the same distribution seen twice on sys.path
    try:
        module = entry_point.load()
    except Exception as error:
        raise PluginError(f"{label} failed to load: {type(error).__name__}: {error}") from error
    manager.register(module, name=entry_point.name)


def plugin_distributions() -> dict[str, Distribution]:
    """The installed distribution of each entry-point plugin, by plugin name."""
    return {
        entry_point.name: Distribution(entry_point.dist.name, entry_point.dist.version)
        for entry_point in metadata.entry_points(group=hookspecs.PROJECT)
        if entry_point.dist is not None
    }


class Registry:
    """Every registered component, by role and name."""

    def __init__(self, manager: pluggy.PluginManager):
        manager.check_pending()
        self._entries: dict[str, dict[str, Entry]] = {role: {} for role in ROLES}
        for role, (hook_name, _, _) in ROLES.items():
            for impl in getattr(manager.hook, hook_name).get_hookimpls():
                self._call_hook(role, impl)

    def _call_hook(self, role: str, impl: pluggy.HookImpl) -> None:
        def register(name: str, factory: Callable[..., Any]) -> None:
            known = self._entries[role].get(name)
            if known is not None:
                raise PluginError(
                    f"{ROLES[role][1]} '{name}' is registered twice: by plugin '{known.plugin}'"
                    f" and by plugin '{impl.plugin_name}'. Uninstall one, or limit loading with"
                    " DDRL_PLUGINS."
                )
            self._entries[role][name] = Entry(role, name, factory, impl.plugin_name)

        try:
            impl.function(register=register)
        except UserError:
            raise
        except Exception as error:
            raise PluginError(
                f"plugin '{impl.plugin_name}' raised in {impl.function.__name__}:"
                f" {type(error).__name__}: {error}"
            ) from error

    def names(self, role: str) -> list[str]:
        return sorted(self._entries[role])

    def entries(self) -> Iterator[Entry]:
        for role in ROLES:
            yield from (self._entries[role][n] for n in self.names(role))

    def get(self, role: str, name: str) -> Entry:
        try:
            return self._entries[role][name]
        except KeyError:
            known = self.names(role)
            raise PluginError(
                f"unknown {ROLES[role][1]} '{name}'.{did_you_mean(name, known)}"
                f" Known: {', '.join(known) or '(none registered)'}."
            ) from None

    def build(self, role: str, name: str, options: Mapping[str, Any], where: str) -> Any:
        """Check ``options`` against the factory's signature, then call it."""
        entry = self.get(role, name)
        component = f"{ROLES[role][1]} '{name}' (plugin '{entry.plugin}')"
        kwargs = structure_options(entry.factory, options, where, component)
        try:
            return entry.factory(**kwargs)
        except UserError:
            raise
        except (TypeError, ValueError) as error:
            raise UserError(f"{where}: {component} rejected its options: {error}") from error


def load_registry(env: Mapping[str, str] | None = None) -> Registry:
    """The registry of every installed (and allowed) plugin."""
    return Registry(make_plugin_manager(env=env))
