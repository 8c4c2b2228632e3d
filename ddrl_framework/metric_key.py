"""What a metric says about each key it reports: its good direction, its range and its margin (the
smallest difference worth a verdict, in the key's own unit). A metric declares them
(``protocols.DeclaresKeys``); the comparison judges and prints each key as declared, and
``[[compare.metrics]]`` overrides a declaration or states one for any other key
(docs/comparisons.md, "Margins").
"""

from __future__ import annotations

import math

import attrs

UNBOUNDED = (-math.inf, math.inf)
NON_NEGATIVE = (0.0, math.inf)
FRACTION = (0.0, 1.0)
DIRECTIONS = ("higher", "lower", None)  # None: not judged (no good direction)

REWARD_KEY = "reward_mean"
"""The evaluator's own key: the mean of the experiment's reward over the evaluation samples."""


@attrs.frozen
class MetricKey:
    """One reported key: ``MetricKey("fd", "lower", 0.0, math.inf, margin=30.0, note="...")``.

    ``column`` and ``position``: its column in the report's final values ("": none), placed by
    ``position`` among the declared columns; ``fidelity``: the samples' distance to the data,
    whose change the report shows and which it plots against the reward; ``summarized_by``:
    another key sums it up, so the report's per-key tables leave it out.
    """

    name: str
    better: str | None = None  # "higher", "lower", or None (not judged: no good direction)
    low: float = -math.inf  # every value lies in [low, high]
    high: float = math.inf
    margin: float | None = None  # None: declare one in [[compare.metrics]] to judge the key as primary
    note: str = ""  # why the margin (or the direction) is what it is
    column: str = ""
    position: int = 0
    digits: int = 3
    fidelity: bool = False
    summarized_by: str = ""  # the key that sums it up (one of ten class fractions): no row of its own

    @property
    def bounds(self) -> tuple[float, float]:
        return self.low, self.high

    def problems(self) -> list[str]:
        """What makes the declaration ill-formed (empty when it is well formed)."""
        out = []
        if not isinstance(self.name, str) or not self.name:
            out.append(f"name {self.name!r} is not a non-empty str")
        if self.better not in DIRECTIONS:
            out.append(f"better = {self.better!r}; expected \"higher\", \"lower\" or None")
        if not self.low < self.high:
            out.append(f"the range [{self.low}, {self.high}] is empty: expected low < high")
        if self.margin is not None and not (math.isfinite(self.margin) and self.margin >= 0):
            out.append(f"margin = {self.margin!r}; expected a finite number >= 0, or None")
        return out

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


REWARD = MetricKey(REWARD_KEY, "higher", note="a reward's scale is its plugin's: no default margin")
