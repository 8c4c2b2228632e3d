"""The plugin registry: pluggy hooks fill one table per role (``roles.ROLES``), keyed by component name.

Plugins load from the entry-point group ``ddrl_framework``; the built-ins are registered there too.
Environment variables:

* ``DDRL_PLUGINS``: a comma-separated allow-list of third-party plugins to load, each named by
  its entry-point name or its distribution name (the built-ins always load); an entry that
  matches no installed plugin is an error;
* ``DDRL_DISABLE_PLUGIN_AUTOLOAD=1``: load no third-party plugin at all.

A factory is a callable, or a ``"module:attribute"`` string imported on first use (when the
component is built or its options are checked), so that registering costs no import of a heavy
dependency. What went wrong while loading (a plugin that fails to import, raises in its hook,
implements a hook that does not exist, registers a taken name; an allow-list entry that matches
nothing) is a :class:`Problem`: ``ddrl plugins`` lists them all, every other command refuses to
run (``Registry(manager, strict=True)``).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator, Mapping
from importlib import metadata
from typing import Any

import attrs
import pluggy

from ddrl_framework import hookspecs
from ddrl_framework.errors import PluginError, UserError
from ddrl_framework.options import did_you_mean, key_error, structure_options
from ddrl_framework.roles import HOOKS, ROLES

BUILTIN_DISTRIBUTION = "ddrl-framework"


@attrs.frozen
class Distribution:
    name: str
    version: str

    def __str__(self) -> str:
        return f"{self.name} {self.version}"


@attrs.frozen
class Entry:
    """A registered component: its factory (``target``: a callable, or ``"module:attribute"``
    resolved on first use), the plugin that registered it, and that plugin's distribution."""

    role: str
    name: str
    target: Callable[..., Any] | str
    plugin: str
    distribution: Distribution | None = None
    forward_process: str | None = None  # declared: the process a policy has / a sampler samples

    @property
    def factory(self) -> Callable[..., Any]:
        """The factory (a string target is imported now, once)."""
        return self.target if callable(self.target) else _resolve(self.target, self.origin)

    @property
    def component(self) -> str:
        """How messages name it: ``reward model 'ink' of plugin 'ink' (ddrl-ink 0.1.0)``."""
        return f"{ROLES[self.role].title} '{self.name}' of {self.origin}"

    @property
    def origin(self) -> str:
        """``plugin 'ink' (ddrl-ink 0.1.0)``, or ``plugin 'ink'`` when it is no installed distribution."""
        return f"plugin '{self.plugin}'" + (f" ({self.distribution})" if self.distribution else "")

    def provenance(self) -> dict[str, Any]:
        """What a run records of where this component came from."""
        dist = self.distribution
        return {"name": self.name, "plugin": self.plugin, "distribution": dist.name if dist else None,
                "version": dist.version if dist else None}


_RESOLVED: dict[str, Callable[..., Any]] = {}


def _resolve(target: str, origin: str) -> Callable[..., Any]:
    if target not in _RESOLVED:
        module_name, _, attribute = target.partition(":")
        try:
            value: Any = importlib.import_module(module_name)
            for part in attribute.split("."):
                value = getattr(value, part)
        except Exception as error:
            raise PluginError(f"{origin} registered the factory '{target}', which cannot be imported: "
                              f"{type(error).__name__}: {error}") from error
        _RESOLVED[target] = value
    return _RESOLVED[target]


@attrs.frozen
class Problem:
    """Something wrong with one plugin (or with ``DDRL_PLUGINS``), found while loading."""

    plugin: str
    message: str  # a full sentence naming the plugin
    distribution: Distribution | None = None

    def advice(self, loaded: list[str]) -> str:
        """How to run without this plugin."""
        if self.plugin == "DDRL_PLUGINS":
            return "Fix DDRL_PLUGINS, or unset it to load every installed plugin."
        if self.distribution is not None and self.distribution.name == BUILTIN_DISTRIBUTION:
            return f"It is a built-in plugin: reinstall {self.distribution}."
        uninstall = f"uninstall {self.distribution.name}, or " if self.distribution else ""
        others = ",".join(p for p in loaded if p != self.plugin) or "<plugin names>"
        return (f"ddrl does not run with a broken plugin; to run without it, {uninstall}load only the "
                f"plugins you want with DDRL_PLUGINS (e.g. DDRL_PLUGINS={others}), or no third-party "
                "plugin with DDRL_DISABLE_PLUGIN_AUTOLOAD=1.")


class PluginManager(pluggy.PluginManager):
    """pluggy's manager with the hook specs added, and what loading the entry points found: each
    plugin's distribution, the problems, and the installed plugins the environment left out
    (with the reason)."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)
        self.distributions: dict[str, Distribution] = {}
        self.problems: list[Problem] = []
        self.skipped: list[tuple[metadata.EntryPoint, str]] = []


def _distribution(entry_point: metadata.EntryPoint) -> Distribution | None:
    dist = entry_point.dist
    return Distribution(dist.name, dist.version) if dist is not None else None


def _allow_list(env: Mapping[str, str]) -> list[str] | None:
    text = env.get("DDRL_PLUGINS")
    return None if text is None else [n.strip() for n in text.split(",") if n.strip()]


def _skip_reason(entry_point: metadata.EntryPoint, env: Mapping[str, str]) -> str | None:
    """Why a third-party entry point is not loaded (None: it is)."""
    dist = _distribution(entry_point)
    if dist is not None and dist.name == BUILTIN_DISTRIBUTION:
        return None
    if env.get("DDRL_DISABLE_PLUGIN_AUTOLOAD", "") not in ("", "0"):
        return "DDRL_DISABLE_PLUGIN_AUTOLOAD is set"
    allow = _allow_list(env)
    if allow is None or entry_point.name in allow or (dist is not None and dist.name in allow):
        return None
    return f"DDRL_PLUGINS={env['DDRL_PLUGINS']} does not name it"


def make_plugin_manager(load_entry_points: bool = True, env: Mapping[str, str] | None = None) -> PluginManager:
    """A plugin manager with the hook specs added and the wanted entry points registered; what
    went wrong is in ``manager.problems`` (nothing raises here)."""
    env = os.environ if env is None else env
    manager = PluginManager()
    if load_entry_points:
        entry_points = list(metadata.entry_points(group=hookspecs.PROJECT))
        _check_allow_list(manager, entry_points, env)
        for entry_point in entry_points:
            reason = _skip_reason(entry_point, env)
            if reason is None:
                _register_entry_point(manager, entry_point)
            else:
                manager.skipped.append((entry_point, reason))
    return manager


def _check_allow_list(manager: PluginManager, entry_points: list[metadata.EntryPoint],
                      env: Mapping[str, str]) -> None:
    names = {e.name for e in entry_points} | {e.dist.name for e in entry_points if e.dist is not None}
    for wanted in _allow_list(env) or []:
        if wanted not in names:
            third_party = sorted({e.name for e in entry_points
                                  if e.dist is None or e.dist.name != BUILTIN_DISTRIBUTION})
            manager.problems.append(Problem("DDRL_PLUGINS", (
                f"DDRL_PLUGINS names '{wanted}', which matches no installed plugin (by entry-point "
                f"or distribution name).{did_you_mean(wanted, names)} Installed third-party plugins: "
                f"{', '.join(third_party) or '(none)'}.")))


def _register_entry_point(manager: PluginManager, entry_point: metadata.EntryPoint) -> None:
    dist, name = _distribution(entry_point), entry_point.name
    label = f"plugin '{name}' ({entry_point.value}" + (f", from {dist})" if dist else ")")
    known = manager.distributions.get(name)
    if manager.has_plugin(name):
        if known is not None and dist is not None and known.name != dist.name:
            manager.problems.append(Problem(name, (
                f"plugin name '{name}' is provided by two distributions, {known} and {dist}; only "
                f"{known.name}'s was loaded. Allow one by its distribution name (DDRL_PLUGINS="
                f"{dist.name}) or uninstall one."), dist))
        return  # else the same distribution seen twice on sys.path
    try:
        module = entry_point.load()
    except Exception as error:
        manager.problems.append(Problem(name, f"{label} failed to load: {type(error).__name__}: {error}", dist))
        return
    manager.register(module, name=name)
    if dist is not None:
        manager.distributions[name] = dist


def _unknown_hooks(manager: PluginManager) -> list[Problem]:
    """Hook implementations whose name matches no hook (what pluggy's ``check_pending`` finds),
    each with the closest real hook."""
    problems = []
    for hook_name, caller in vars(manager.hook).items():
        if hook_name.startswith("_") or caller.has_spec():
            continue
        for impl in caller.get_hookimpls():
            if not impl.optionalhook:
                problems.append(Problem(impl.plugin_name, (
                    f"plugin '{impl.plugin_name}' implements '{hook_name}', which is not a hook."
                    f"{did_you_mean(hook_name, HOOKS)} The hooks: {', '.join(HOOKS)}."),
                    manager.distributions.get(impl.plugin_name)))
    return problems


class Registry:
    """Every registered component, by role and name; ``problems`` lists the broken plugins
    (``strict``: a broken plugin is a :class:`PluginError` here, naming it and how to exclude it)."""

    def __init__(self, manager: PluginManager, strict: bool = True):
        self._manager = manager
        self._entries: dict[str, dict[str, Entry]] = {role: {} for role in ROLES}
        self.problems: list[Problem] = [*manager.problems, *_unknown_hooks(manager)]
        broken = {p.plugin for p in self.problems}
        for role in ROLES.values():
            for impl in getattr(manager.hook, role.hook).get_hookimpls():
                if impl.plugin_name not in broken:
                    self._call_hook(role.name, impl)
        if strict and self.problems:
            problem = self.problems[0]
            raise PluginError(f"{problem.message} {problem.advice(self.plugins())} (`ddrl plugins` lists "
                              "every plugin and its state.)")

    def plugins(self) -> list[str]:
        """The names of the loaded third-party plugins (the built-ins always load)."""
        return [name for name, dist in self._manager.distributions.items() if dist.name != BUILTIN_DISTRIBUTION]

    def skipped(self) -> list[tuple[str, Distribution | None, str]]:
        """The installed plugins the environment left out: ``(name, distribution, why)``."""
        return [(e.name, _distribution(e), reason) for e, reason in self._manager.skipped]

    def _call_hook(self, role: str, impl: pluggy.HookImpl) -> None:
        plugin, dist = impl.plugin_name, self._manager.distributions.get(impl.plugin_name)
        registered: dict[str, Entry] = {}

        def register(name: str, factory: Callable[..., Any] | str, *, forward_process: str | None = None) -> None:
            if not isinstance(name, str) or not name or not (callable(factory) or ":" in str(factory)):
                raise TypeError(f"register({name!r}, {factory!r}): expected a name and a factory (a callable, "
                                "or a 'module:attribute' string)")
            known, entry = self._entries[role].get(name) or registered.get(name), Entry(
                role, name, factory, plugin, dist, forward_process)
            if known is not None:
                raise _Duplicate(f"{ROLES[role].title} '{name}' is registered twice: by {known.origin} and by "
                                 f"{entry.origin}.")
            registered[name] = entry

        try:
            impl.function(register=register)
        except _Duplicate as error:
            self.problems.append(Problem(plugin, f"{error} Rename one of them.", dist))
            return
        except Exception as error:
            self.problems.append(Problem(plugin, (f"plugin '{plugin}' raised in {impl.function.__name__}:"
                                                  f" {type(error).__name__}: {error}."), dist))
            return
        self._entries[role].update(registered)

    def names(self, role: str) -> list[str]:
        return sorted(self._entries[_known_role(role)])

    def entries(self) -> Iterator[Entry]:
        for role in ROLES:
            yield from (self._entries[role][n] for n in self.names(role))

    def get(self, role: str, name: str, where: str | None = None) -> Entry:
        """The entry of ``name``; an unknown name is a :class:`PluginError` with a did-you-mean, the
        known names, and, when an installed plugin left out by the environment has it, how to load it."""
        try:
            return self._entries[_known_role(role)][name]
        except KeyError:
            known = self.names(role)
            message = (f"unknown {ROLES[role].title} '{name}'.{did_you_mean(name, known)}"
                       f" Known: {', '.join(known) or '(none registered)'}.{self._left_out_hint(role, name)}")
            raise PluginError(key_error(where, message) if where else message) from None

    def _left_out_hint(self, role: str, name: str) -> str:
        """Which installed-but-not-loaded plugin registers ``name`` (found by loading them now)."""
        for entry_point, reason in self._manager.skipped:
            if name in _names_registered_by(entry_point, ROLES[role].hook):
                return (f" It is registered by plugin '{entry_point.name}' ({_distribution(entry_point)}), which is "
                        f"installed but not loaded: {reason}. Allow it (DDRL_PLUGINS="
                        f"{','.join([*self.plugins(), entry_point.name])}), or unset that variable.")
        if self._manager.skipped:
            left_out = ", ".join(f"'{e.name}' ({reason})" for e, reason in self._manager.skipped)
            return f" Installed plugins not loaded: {left_out}."
        return ""

    def check(self, role: str, name: str, options: Mapping[str, Any], where: str) -> dict[str, Any]:
        """``options`` checked against the factory's signature, types and validators (nothing is
        built); returns them structured."""
        entry = self.get(role, name, f"{where} name")
        return structure_options(entry.factory, options, where, entry.component)

    def build(self, role: str, name: str, options: Mapping[str, Any], where: str) -> Any:
        """Check ``options`` against the factory's signature, then call it."""
        entry = self.get(role, name)
        kwargs = structure_options(entry.factory, options, where, entry.component)
        try:
            return entry.factory(**kwargs)
        except UserError:
            raise
        except (TypeError, ValueError) as error:
            raise UserError(key_error(where, f"{entry.component} rejected its options: {error}")) from error


class _Duplicate(Exception):
    pass


def _known_role(role: str) -> str:
    if role not in ROLES:
        raise PluginError(f"unknown role '{role}'.{did_you_mean(role, ROLES)} The roles (registry.ROLES): "
                          f"{', '.join(repr(r) for r in ROLES)}.")
    return role


def _names_registered_by(entry_point: metadata.EntryPoint, hook_name: str) -> list[str]:
    """The names a (not loaded) plugin registers through ``hook_name``; none if it cannot load."""
    names: list[str] = []
    try:
        hook = getattr(entry_point.load(), hook_name, None)
        if hook is not None:
            hook(register=lambda name, *args, **kwargs: names.append(name))
    except Exception:  # noqa: BLE001 - only a hint: a plugin that cannot load registers nothing here
        return []
    return names


def load_registry(env: Mapping[str, str] | None = None, strict: bool = True) -> Registry:
    """The registry of every installed (and allowed) plugin; ``strict``: a broken one is an error."""
    return Registry(make_plugin_manager(env=env), strict=strict)
