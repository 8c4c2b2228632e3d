"""The family of verdicts of a comparison (docs/comparisons.md, "Statistics"): each judged row's
two tests, their multiplicity correction, and the difference each row could have detected.

Per row, from the paired per-seed differences ``d`` (``n`` seeds, mean ``m``, standard error
``se``):

* **difference**: the two-sided paired t test of ``E[d] = 0``, ``p = 2 P(T > |m| / se)``;
* **equivalence** (TOST, Schuirmann 1987): two one-sided t tests of ``E[d] <= -margin`` and
  ``E[d] >= margin``, ``p = max(P(T > (m + margin) / se), P(T < (m - margin) / se))``.

Both tests of every row in the family go through Holm's step-down correction (Holm 1979), which
holds the family-wise error rate at ``alpha`` for any dependence between the tests. A row is
"equivalent within the margin" when its corrected equivalence p is below ``alpha`` (a difference
smaller than the smallest effect of interest is no win, even when it is not 0), else "A better" /
"B better" when its corrected difference p is (in the metric's good direction), else
"inconclusive". Rows outside the family (not declared primary) get no verdict: "exploratory".

The detectable difference is the smallest true ``|E[d]|`` that the difference test finds with
80% power at the row's ``n`` and standard deviation, at the Bonferroni level ``alpha / m``
(Holm's first step, so a bound for the whole family), from the noncentral t (``scipy.stats.nct``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from scipy import optimize, stats

from ddrl_framework.comparison.statistics import (
    A_BETTER, B_BETTER, EQUIVALENT, INCONCLUSIVE, Interval, t_cdf)

EXPLORATORY = "exploratory (no verdict)"
POWER = 0.8


def p_difference(interval: Interval) -> float:
    """The two-sided p-value of ``E[A - B] = 0`` (1 with fewer than 2 pairs)."""
    if not interval.defined:
        return 1.0
    if interval.se == 0:
        return 0.0 if interval.mean != 0 else 1.0
    return min(1.0, 2 * (1 - t_cdf(abs(interval.mean) / interval.se, interval.n - 1)))


def p_equivalence(interval: Interval, margin: float | None) -> float:
    """TOST's p-value against ``|E[A - B]| >= margin`` (1 with fewer than 2 pairs or no margin)."""
    if not interval.defined or margin is None:
        return 1.0
    if interval.se == 0:
        return 0.0 if abs(interval.mean) < margin else 1.0
    df = interval.n - 1
    above_low = 1 - t_cdf((interval.mean + margin) / interval.se, df)
    below_high = t_cdf((interval.mean - margin) / interval.se, df)
    return max(above_low, below_high)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input's order:
    ``max_{j <= i} min(1, (m - j + 1) p_(j))`` over the ascending order."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [1.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def detectable_difference(interval: Interval, alpha: float, family_size: int) -> float:
    """The smallest true difference found with 80% power (module docstring); inf below 2 pairs."""
    if not interval.defined:
        return math.inf
    if interval.se == 0:
        return 0.0
    df, level = interval.n - 1, alpha / max(family_size, 1)
    critical = stats.t.ppf(1 - level / 2, df)

    def power(shift: float) -> float:
        lower = float(stats.nct.cdf(-critical, df, shift))  # negligible for a positive shift; nan far out
        return float(stats.nct.sf(critical, df, shift)) + (0.0 if math.isnan(lower) else lower) - POWER

    high = critical + 1.0
    while power(high) < 0:
        high *= 2
    return optimize.brentq(power, 0.0, high, xtol=1e-10) * interval.se


def family_verdicts(rows: Sequence[tuple[Interval, float | None, bool]], primary: Sequence[bool],
                    alpha: float) -> list[tuple[str, float, float]]:
    """``(verdict, corrected difference p, corrected equivalence p)`` per row, for rows of
    ``(interval, margin, higher_is_better)``; only the ``primary`` rows form the family."""
    family = [i for i, chosen in enumerate(primary) if chosen]
    raw = [p for i in family for p in (p_difference(rows[i][0]), p_equivalence(rows[i][0], rows[i][1]))]
    adjusted = holm(raw)
    out = [(EXPLORATORY, math.nan, math.nan)] * len(rows)
    for position, i in enumerate(family):
        interval, _, higher_is_better = rows[i]
        difference, equivalence = adjusted[2 * position], adjusted[2 * position + 1]
        verdict = INCONCLUSIVE
        if equivalence < alpha:  # within the smallest effect of interest, even if not exactly 0
            verdict = EQUIVALENT
        elif difference < alpha:
            verdict = A_BETTER if (interval.mean > 0) == higher_is_better else B_BETTER
        out[i] = (verdict, difference, equivalence)
    return out
