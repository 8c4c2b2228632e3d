"""The comparison's statistics against independent references: printed t tables, closed forms,
hand-computed intervals, and the coverage of the interval on simulated paired seeds."""

import math
import random

import pytest

from ddrl_framework.comparison.statistics import (
    A_BETTER,
    B_BETTER,
    EQUIVALENT,
    INCONCLUSIVE,
    Interval,
    paired_interval,
    t_cdf,
    t_quantile,
    value_at,
    verdict,
)

# two-sided 95% (the 0.975 quantile) and one-sided 95% values of a printed t table
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 9: 2.262, 10: 2.228, 29: 2.045, 120: 1.980}
T_95 = {1: 6.314, 2: 2.920, 4: 2.132, 10: 1.812, 30: 1.697}


@pytest.mark.parametrize("df,value", sorted(T_975.items()))
def test_t_quantile_matches_the_printed_table_at_975(df, value):
    assert t_quantile(0.975, df) == pytest.approx(value, abs=6e-4)


@pytest.mark.parametrize("df,value", sorted(T_95.items()))
def test_t_quantile_matches_the_printed_table_at_95(df, value):
    assert t_quantile(0.95, df) == pytest.approx(value, abs=6e-4)


@pytest.mark.parametrize("p", [0.6, 0.9, 0.975, 0.999, 0.1])
def test_t_quantile_matches_the_closed_forms_for_one_and_two_degrees_of_freedom(p):
    assert t_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-9)
    assert t_quantile(p, 2) == pytest.approx((2 * p - 1) / math.sqrt(2 * p * (1 - p)), rel=1e-9)


def test_t_quantile_approaches_the_normal_one_for_many_degrees_of_freedom():
    assert t_quantile(0.975, 1e6) == pytest.approx(1.959964, abs=1e-4)


def test_t_cdf_is_symmetric_and_a_half_at_zero():
    assert t_cdf(0.0, 3) == pytest.approx(0.5)
    assert t_cdf(-1.7, 5) == pytest.approx(1 - t_cdf(1.7, 5))


def test_paired_interval_by_hand():
    # differences 1, 2, 3, 6: mean 3, sd sqrt(14/3), t(0.975, 3) = 3.182 from the table
    interval = paired_interval([11, 12, 13, 16], [10, 10, 10, 10])
    half = 3.182 * math.sqrt(14 / 3) / 2
    assert interval.n == 4 and interval.mean == pytest.approx(3)
    assert (interval.low, interval.high) == pytest.approx((3 - half, 3 + half), abs=1e-3)


def test_a_seed_missing_on_either_side_is_left_out_and_one_pair_is_unbounded():
    interval = paired_interval([1.0, None, 3.0], [0.0, 5.0, None])
    assert interval.n == 1 and interval.mean == 1.0 and math.isinf(interval.high)
    assert verdict(interval, margin=10.0, higher_is_better=True) == INCONCLUSIVE
    with pytest.raises(ValueError, match="one per seed"):
        paired_interval([1.0], [1.0, 2.0])


def test_identical_arms_are_equivalent_never_different():
    interval = paired_interval([3.0, 4.0, 5.0], [3.0, 4.0, 5.0])
    assert (interval.low, interval.high) == (0.0, 0.0)
    assert verdict(interval, margin=0.0, higher_is_better=True) == EQUIVALENT


@pytest.mark.parametrize("low,high,higher,expected", [
    (1.0, 2.0, True, A_BETTER), (1.0, 2.0, False, B_BETTER),
    (-2.0, -1.0, True, B_BETTER), (-2.0, -1.0, False, A_BETTER),
    (-0.4, 0.4, True, EQUIVALENT), (-0.4, 0.6, True, INCONCLUSIVE),
    (0.1, 0.3, True, EQUIVALENT),  # a real difference inside the margin is reported as equivalent
    (-3.0, 3.0, False, INCONCLUSIVE),
])
def test_verdict(low, high, higher, expected):
    interval = Interval(n=3, mean=(low + high) / 2, low=low, high=high, confidence=0.95)
    assert verdict(interval, margin=0.5, higher_is_better=higher) == expected


def test_coverage_of_the_paired_interval_on_simulated_seeds():
    """Seeds share a luck term (cancels in the pair) and each run adds its own noise; the 95%
    interval must cover the true difference about 95% of the time, at 3 seeds."""
    rng, true_difference, covered, trials = random.Random(0), 0.7, 0, 4000
    for _ in range(trials):
        luck = [rng.gauss(0, 5) for _ in range(3)]
        a = [u + true_difference + rng.gauss(0, 1) for u in luck]
        b = [u + rng.gauss(0, 1) for u in luck]
        interval = paired_interval(a, b)
        covered += interval.low <= true_difference <= interval.high
    assert 0.935 <= covered / trials <= 0.965


def test_value_at_interpolates_at_the_first_crossing():
    rewards = [0.3, 0.5, 0.4, 0.7, 0.9]
    fd = [30, 100, 90, 300, 700]
    assert value_at(rewards, fd, 0.45) == pytest.approx(30 + 70 * 0.75)  # between the first two
    assert value_at(rewards, fd, 0.6) == pytest.approx(90 + 210 * 2 / 3)  # 0.4 -> 0.7, after the dip
    assert value_at(rewards, fd, 0.2) == 30  # already above at the start
    assert value_at(rewards, fd, 0.95) is None  # never reached
    assert value_at([0, 10, 20], [1.0, 2.0, 4.0], 15) == pytest.approx(3.0)  # along iterations
