"""What the report knows about each eval key: its good direction, its range, and its margin (the
smallest difference worth a verdict, in the key's own unit). One table for the built-in keys;
``[[compare.metrics]]`` states them for any other key, or overrides them (docs/comparisons.md,
"Margins", gives the reasoning behind each default; ``benchmarks/metric_margins.py`` measures the
FD and class-entropy cost of losing one digit class that two of them rest on).
"""

from __future__ import annotations

import math

import attrs

REWARD = "reward_mean"


UNBOUNDED = (-math.inf, math.inf)
NON_NEGATIVE = (0.0, math.inf)
FRACTION = (0.0, 1.0)


@attrs.frozen
class KeyFacts:
    better: str | None  # "higher", "lower", or None (not judged: no good direction)
    bounds: tuple[float, float] = UNBOUNDED  # where every value lies
    margin: float | None = None  # None: declare one in [[compare.metrics]] to judge the key as primary

BUILT_IN = {
    REWARD: KeyFacts("higher"),  # a reward's scale is its plugin's: no default margin
    "fd": KeyFacts("lower", NON_NEGATIVE, 30.0),  # about one digit class of ten lost (FD +31)
    "class_entropy": KeyFacts("higher", FRACTION, 0.05),  # one class of ten lost: 1 - ln 9 / ln 10 = 0.046
    "recognizable": KeyFacts("higher", FRACTION, 0.05),  # one sample in twenty
    "hack_rate": KeyFacts("lower", FRACTION, 0.05),  # one sample in twenty
    "pairwise_distance": KeyFacts("higher", NON_NEGATIVE),
    "drift_kl": KeyFacts(None, NON_NEGATIVE),
}


def facts(key: str) -> KeyFacts:
    """The built-in facts of an eval key: the table, then by prefix (``fd_*``: an FD, lower;
    ``heldout_<key>``, not its ``_std``: a held-out reward, higher); else no direction."""
    if key in BUILT_IN:
        return BUILT_IN[key]
    if key.startswith("fd_"):
        return KeyFacts("lower", NON_NEGATIVE)
    if key.startswith("heldout_") and not key.endswith("_std"):
        return KeyFacts("higher")
    return KeyFacts(None)


def margin_of(key: str, declared: float | None) -> tuple[float | None, str]:
    """A key's margin and where it comes from: ``declared`` ("config"), else the built-in
    default ("default"), else none ("none": no equivalence test, and no primary comparison)."""
    if declared is not None:
        return declared, "config"
    default = facts(key).margin
    return default, "default" if default is not None else "none"


def difference_bounds(bounds: tuple[float, float]) -> tuple[float, float]:
    """Where a difference of two values in ``bounds`` lies."""
    low, high = bounds
    return (low - high, high - low)


def cut(low: float, high: float, bounds: tuple[float, float]) -> tuple[float, float]:
    """An interval cut to ``bounds``: the true value lies inside them, so the cut interval covers
    it whenever the uncut one does (the same coverage, never an impossible value)."""
    return max(low, bounds[0]), min(high, bounds[1])
