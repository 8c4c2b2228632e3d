"""What the report knows about each eval key: its good direction, its range and its margin (the
smallest difference worth a verdict, in the key's own unit), as the metric that reports it
declares them (``ddrl_framework.metric_key.MetricKey``, read from the metric's class without
building it); ``[[compare.metrics]]`` states them for any other key, or overrides them
(docs/comparisons.md, "Margins"). The comparison names no metric's key: it reads them all here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ddrl_framework.metric_key import REWARD, UNBOUNDED, MetricKey
from ddrl_framework.registry import Registry

Declared = Mapping[str, MetricKey]


def declared_keys(metrics: Iterable[Mapping[str, Any]], registry: Registry) -> dict[str, MetricKey]:
    """Every key the experiment's metrics declare (``metrics``: its ``[[metrics]]`` tables, each
    ``name`` and options), after the evaluator's reward; the first declaration of a key holds."""
    out = {REWARD.name: REWARD}
    for table in metrics:
        options = {k: v for k, v in table.items() if k != "name"}
        for key in keys_of_metric(registry, table["name"], options):
            out.setdefault(key.name, key)
    return out


def keys_of_metric(registry: Registry, name: str, options: Mapping[str, Any]) -> Sequence[MetricKey]:
    """The keys metric ``name`` declares for ``options``; none when it is not installed or
    declares none (its keys then have no direction unless ``[[compare.metrics]]`` gives one)."""
    from ddrl_framework.protocols import DeclaresKeys  # imported here: protocols imports torch

    if name not in registry.names("metric"):
        return ()
    factory = registry.get("metric", name).factory
    return tuple(factory.metric_keys(options)) if isinstance(factory, DeclaresKeys) else ()


def facts(key: str, declared: Declared) -> MetricKey:
    """The declaration of an eval key; an undeclared key has no direction and no range."""
    return declared.get(key) or MetricKey(key)


def margin_of(key: str, stated: float | None, declared: Declared) -> tuple[float | None, str]:
    """A key's margin and where it comes from: ``stated`` in ``[[compare.metrics]]`` ("config"),
    else its metric's declared default ("default"), else none ("none": no equivalence test, and
    no primary comparison)."""
    if stated is not None:
        return stated, "config"
    default = facts(key, declared).margin
    return default, "default" if default is not None else "none"


def difference_bounds(bounds: tuple[float, float]) -> tuple[float, float]:
    """Where a difference of two values in ``bounds`` lies."""
    low, high = bounds
    return (low - high, high - low)


def cut(low: float, high: float, bounds: tuple[float, float] = UNBOUNDED) -> tuple[float, float]:
    """An interval cut to ``bounds``: the true value lies inside them, so the cut interval covers
    it whenever the uncut one does (the same coverage, never an impossible value)."""
    return max(low, bounds[0]), min(high, bounds[1])


def fidelity_key(declared: Declared) -> str | None:
    """The key the report shows as the samples' distance to the data (its change, its plots)."""
    return next((k.name for k in declared.values() if k.fidelity), None)


def final_columns(declared: Declared) -> list[MetricKey]:
    """The keys with a column in the report's final values, but the fidelity key, by their
    declared position."""
    return sorted((k for k in declared.values() if k.column and not k.fidelity), key=lambda k: k.position)


def summarized(declared: Declared) -> frozenset[str]:
    """The keys another key sums up: the report's per-key tables leave them out."""
    return frozenset(k.name for k in declared.values() if k.summarized_by)
