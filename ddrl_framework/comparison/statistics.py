"""The statistics of a comparison: Student's t (``scipy.stats``), values matched along a run's
evaluation trajectory, paired-seed intervals and the interval-only verdict.

* :func:`t_cdf`, :func:`t_quantile`: ``scipy.stats.t`` (until 2026-12-06 a hand-written
  incomplete beta, which agreed with scipy within 3e-6).
* :func:`value_at` reads a metric where a run first reaches a level of another quantity (reward,
  seconds, network passes, iterations), linearly interpolated between the two evaluations that
  bracket the crossing: how arms are compared at matched reward without matching their betas.
* :func:`paired_interval` is the paired t interval of the per-seed differences between two
  settings (same seed: same data order, rollout and evaluation noise, so the seed's own luck
  cancels in the difference).
* :func:`verdict` is TOST-style: "equivalent within the margin" when the whole interval lies in
  ``[-margin, margin]``; otherwise a side is better when the interval excludes 0 in the metric's
  good direction; otherwise "inconclusive". One row alone, uncorrected: the rule before
  ``family.py`` (which reports use now), kept as the contrast ``benchmarks/error_rates.py`` prints.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import attrs
from scipy import stats

A_BETTER, B_BETTER, EQUIVALENT, INCONCLUSIVE = ("A better", "B better", "equivalent within the margin",
                                                "inconclusive")


def t_cdf(t: float, df: float) -> float:
    """Student's t cumulative distribution function with ``df`` degrees of freedom (scipy)."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be > 0, got {df}")
    return float(stats.t.cdf(t, df))


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t (``0 < p < 1``; scipy)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p = {p} is outside (0, 1)")
    return float(stats.t.ppf(p, df))


def value_at(levels: Sequence[float], values: Sequence[float], level: float) -> float | None:
    """``values`` where ``levels`` (one per evaluation, in the order of the run) first reaches
    ``level``, linearly interpolated between the evaluations on either side of the crossing;
    ``None`` when the run never reaches it. A run that starts at or above ``level`` reads its
    first value. Levels may fall and rise again (a noisy reward): the first crossing counts."""
    if len(levels) != len(values):
        raise ValueError(f"{len(levels)} levels but {len(values)} values")
    for i, (x, y) in enumerate(zip(levels, values)):
        if x >= level:
            if i == 0 or x == levels[i - 1]:
                return float(y)
            x0, y0 = levels[i - 1], values[i - 1]
            return float(y0 + (y - y0) * (level - x0) / (x - x0))
    return None


@attrs.frozen(kw_only=True)
class Interval:
    """The mean of ``n`` paired differences (A - B) and its two-sided ``confidence`` interval."""

    n: int
    mean: float
    low: float
    high: float
    confidence: float
    sd: float = math.nan  # of the per-seed differences (n - 1 in the denominator)

    @property
    def defined(self) -> bool:
        return self.n >= 2

    @property
    def se(self) -> float:
        """The standard error of the mean difference, ``sd / sqrt(n)``."""
        return self.sd / math.sqrt(self.n) if self.n else math.nan


def paired_interval(a: Sequence[float | None], b: Sequence[float | None],
                    confidence: float = 0.95) -> Interval:
    """The paired t interval of ``a[i] - b[i]`` over the seeds where both are known (``None``:
    a run that never reached the matched level, or a missing run; that seed is left out).
    With fewer than two pairs the interval is unbounded."""
    if len(a) != len(b):
        raise ValueError(f"paired values need one per seed on both sides ({len(a)} and {len(b)})")
    differences = [x - y for x, y in zip(a, b) if x is not None and y is not None
                   and math.isfinite(x) and math.isfinite(y)]
    n = len(differences)
    if n == 0:
        return Interval(n=0, mean=math.nan, low=-math.inf, high=math.inf, confidence=confidence)
    mean = math.fsum(differences) / n
    if n == 1:
        return Interval(n=1, mean=mean, low=-math.inf, high=math.inf, confidence=confidence)
    sd = math.sqrt(math.fsum((d - mean) ** 2 for d in differences) / (n - 1))
    half = t_quantile(0.5 + confidence / 2.0, n - 1) * sd / math.sqrt(n)
    return Interval(n=n, mean=mean, low=mean - half, high=mean + half, confidence=confidence, sd=sd)


def verdict(interval: Interval, margin: float, higher_is_better: bool) -> str:
    """"A better", "B better", "equivalent within the margin" or "inconclusive" for the interval
    of A - B, a margin ``>= 0`` in the metric's units, and the metric's good direction."""
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    if not interval.defined:
        return INCONCLUSIVE
    if -margin <= interval.low and interval.high <= margin:
        return EQUIVALENT
    low, high = (interval.low, interval.high) if higher_is_better else (-interval.high, -interval.low)
    if low > 0:
        return A_BETTER
    if high < 0:
        return B_BETTER
    return INCONCLUSIVE
