"""The verdicts of a comparison, computed from the saved metrics (docs/comparisons.md, "Statistics").

For each pair of settings (arm and beta) and each judged metric, the per-seed values of both sides
are read at a common point of their evaluation trajectories, paired by seed, and their difference
gets a paired t interval and a verdict (:mod:`ddrl_framework.comparison.statistics`). Two views:

* **matched reward**: each run's metric where its reward, smoothed over 3 evaluations, first
  reaches each level of ``[compare].matched_reward`` (declared before the runs); with none
  declared, a level every run of both settings reaches (80% of the way from the highest start to
  the highest such level), chosen after the runs and so exploratory, never in the family;
* **equal budget**: at the largest budget every run of both settings reached, in iterations,
  seconds (the median seconds per iteration times the iterations: robust to outside load) or
  network passes (``[compare].budget``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from ddrl_framework.comparison.family import detectable_difference, family_verdicts
from ddrl_framework.comparison.metric_keys import Declared, difference_bounds, facts, margin_of
from ddrl_framework.comparison.statistics import INCONCLUSIVE, Interval, paired_interval, value_at
from ddrl_framework.errors import UserError
from ddrl_framework.metric_key import REWARD_KEY, UNBOUNDED

@attrs.frozen(kw_only=True)
class Rule:
    """A judged metric: its key, good direction, range and margin (and where the margin came from)."""

    key: str
    higher_is_better: bool
    margin: float | None  # None: no smallest effect of interest stated, so no equivalence test
    margin_source: str  # "config", "default" (its metric's declaration) or "none"
    bounds: tuple[float, float] = UNBOUNDED


@attrs.frozen(kw_only=True)
class Judgement:
    """One row of the verdict table."""

    view: str  # "matched reward" (a declared level), MATCHED_POST_HOC, or "equal iterations" / ...
    a: str
    b: str
    metric: str
    better: str  # "higher" or "lower"
    at: float  # the reward level or the budget
    a_values: tuple[float | None, ...]  # per seed
    b_values: tuple[float | None, ...]
    interval: Interval
    margin: float | None
    margin_source: str
    verdict: str  # after Holm's correction over the family; "exploratory (no verdict)" outside it
    a_crossed: tuple[float | None, ...] = ()  # per seed, matched reward: the iteration where the run crossed
    b_crossed: tuple[float | None, ...] = ()
    primary: bool = True  # in the corrected family
    p_difference: float = math.nan  # Holm-corrected p of A - B = 0
    p_equivalence: float = math.nan  # Holm-corrected TOST p of |A - B| >= margin
    detectable: float = math.inf  # the smallest |A - B| found with 80% power (family.py)
    bounds: tuple[float, float] = UNBOUNDED  # of A - B


def rules(compare: Mapping[str, Any], eval_keys: Sequence[str], declared: Declared,
          source: str = "compare.json") -> list[Rule]:
    """The judged metrics: every evaluated key with a direction, as its metric declares it
    (``declared``, metric_keys.py) or as ``[compare].metrics`` states it, whose entries override
    the declaration of their key."""
    stated = {item["key"]: item for item in compare.get("metrics") or []}
    keys = [k for k in eval_keys if facts(k, declared).better and k not in stated] + list(stated)
    out = []
    for key in keys:
        declaration, item = facts(key, declared), stated.get(key, {})
        better = item.get("better") or declaration.better
        if better is None:
            raise UserError(no_direction(source, key))
        margin, origin = margin_of(key, item.get("margin"), declared)
        out.append(Rule(key=key, higher_is_better=better == "higher", margin=margin, margin_source=origin,
                        bounds=declaration.bounds))
    return out


def no_direction(source: str, key: str) -> str:
    return (f"{source}: compare.metrics entry '{key}' has no declared direction (its metric declares "
            "none); add better = \"higher\" or better = \"lower\"")


def resolve_pairs(compare: Mapping[str, Any], labels: Mapping[str, tuple[str, float | None]],
                  source: str = "compare.json") -> list[tuple[str, str]]:
    """The compared settings as report labels: ``[compare].pairs`` (each side "arm" or
    "arm@beta"), or every pair of settings of different arms, in config order."""
    if not compare.get("pairs"):
        names = list(labels)
        return [(a, b) for i, a in enumerate(names) for b in names[i + 1:] if labels[a][0] != labels[b][0]]
    return [tuple(setting_label(side, labels, source) for side in pair) for pair in compare["pairs"]]


def setting_label(name: str, labels: Mapping[str, tuple[str, float | None]], source: str) -> str:
    """The label of the setting that ``name`` ("arm" or "arm@beta") names (UserError if none or several)."""
    arm, _, beta = name.partition("@")
    matches = [label for label, (a, b) in labels.items()
               if a == arm and (not beta or (b is not None and math.isclose(b, float(beta))))]
    if len(matches) != 1:
        known = ", ".join(f"{a}@{b:g}" if b is not None else a for a, b in labels.values())
        why = "several settings; add @beta" if matches else "no such setting"
        raise UserError(f"{source}: compare.pairs names '{name}': {why}. The settings: {known}")
    return matches[0]


def check_declared(compare: Any, source: str, declared: Declared) -> None:
    """Before any run: each ``[compare].pairs`` and ``[compare].primary`` side names a setting of
    the file, and each ``[compare].metrics`` entry has a direction (stated there, or declared by
    its metric: ``declared``)."""
    labels = {f"{arm.name} β={beta:g}" if beta is not None else arm.name: (arm.name, beta)
              for arm in compare.arms for beta in (arm.betas or (None,))}
    for pair in compare.pairs:
        for side in pair:
            setting_label(side, labels, source)
    stated_metrics = {m.key: m for m in compare.metrics}
    for i, item in enumerate(compare.primary):
        where = f"{source}: compare.primary[{i}] ({item.metric}, {' / '.join(item.pair)}, {item.view})"
        for side in item.pair:
            setting_label(side, labels, where)
        stated = stated_metrics.get(item.metric)
        if margin_of(item.metric, stated.margin if stated else None, declared)[0] is None:
            raise UserError(f"{where}: '{item.metric}' has no margin, the smallest difference worth a "
                            f"verdict in its own unit; add [[compare.metrics]] key = \"{item.metric}\", "
                            "margin = ... (docs/comparisons.md, \"Margins\")")
        if item.view == "matched reward" and not compare.matched_reward:
            raise UserError(f"{where}: a primary comparison at matched reward needs its level declared "
                            "before the runs: set [compare] matched_reward = [level, ...], or use "
                            "view = \"equal budget\"")
    for metric in compare.metrics:
        if metric.better is None and facts(metric.key, declared).better is None:
            raise UserError(no_direction(source, metric.key))


SMOOTHING = 3  # evaluations in the centred moving average of the reward a crossing is read on


def smoothed(values: Sequence[float], width: int = SMOOTHING) -> list[float]:
    """The centred moving average over ``width`` evaluations, the window narrowed symmetrically at
    the ends (the first and last evaluations stay as they are): a run crosses a reward level
    where its trend does, not at one noisy evaluation's touch, and a straight line is unchanged."""
    out = []
    for i in range(len(values)):
        half = min(width // 2, i, len(values) - 1 - i)
        out.append(statistics.fmean(values[i - half:i + half + 1]))
    return out


def trajectory(run: Mapping[str, Any], axis: str) -> list[float]:
    """The run's position on ``axis`` at each evaluation: iterations, reward (smoothed), seconds
    (the median seconds per iteration times the iterations) or network passes."""
    iterations = [e["iteration"] for e in run["eval"]]
    if axis == "iterations":
        return iterations
    if axis == "reward":
        return smoothed([e[REWARD_KEY] for e in run["eval"]])
    key = "seconds" if axis == "seconds" else "network_passes"
    per_iteration = [t[key] for t in run["train"] if key in t]
    if not per_iteration:
        raise UserError(f"{run['dir']}: no '{key}' in metrics.jsonl, so no equal-{axis} view; "
                        "set [compare] budget = \"iterations\", or rerun with this version")
    return [statistics.median(per_iteration) * i for i in iterations]


def per_seed(runs: Sequence[Mapping[str, Any]], seeds: Sequence[int], key: str, axis: str,
             level: float) -> tuple[float | None, ...]:
    """Each seed's value of ``key`` where its run reaches ``level`` on ``axis`` (None: not reached)."""
    by_seed = {run["seed"]: run for run in runs}
    out = []
    for seed in seeds:
        run = by_seed.get(seed)
        pairs = [] if run is None else [(x, e.get(key)) for x, e in zip(trajectory(run, axis), run["eval"])]
        pairs = [(x, y) for x, y in pairs if y is not None]
        out.append(value_at([x for x, _ in pairs], [y for _, y in pairs], level) if pairs else None)
    return tuple(out)


MATCHED_FRACTION = 0.8
MATCHED_DECLARED, MATCHED_POST_HOC = "matched reward", "matched reward, level chosen after the runs"


def common_reward_level(runs: Sequence[Mapping[str, Any]]) -> float | None:
    """``MATCHED_FRACTION`` of the way from the highest start to the highest (smoothed) reward
    that every run reaches, if that is above every run's start; else None. Chosen after seeing
    the runs, so its rows are exploratory (``MATCHED_POST_HOC``)."""
    if not runs:
        return None
    rewards = [trajectory(run, "reward") for run in runs]
    level = min(max(r) for r in rewards)
    start = max(r[0] for r in rewards)
    return start + MATCHED_FRACTION * (level - start) if level > start else None


def common_budget(runs: Sequence[Mapping[str, Any]], axis: str) -> float:
    return min(trajectory(run, axis)[-1] for run in runs)


def is_primary(judgement: Judgement, primary: Sequence[Mapping[str, Any]],
               labels: Mapping[str, tuple[str, float | None]]) -> bool:
    """Whether a row is one of the declared primary comparisons (when none is declared, every row
    but those at a reward level chosen after the runs)."""
    if judgement.view == MATCHED_POST_HOC:
        return False
    if not primary:
        return True
    for item in primary:
        a, b = (setting_label(side, labels, "compare.primary") for side in item["pair"])
        view = item.get("view", "matched reward")
        same_view = judgement.view == view or (view == "equal budget" and judgement.view.startswith("equal"))
        if item["metric"] == judgement.metric and {a, b} == {judgement.a, judgement.b} and same_view:
            return True
    return False


def correct(judgements: Sequence[Judgement], primary: Sequence[Mapping[str, Any]],
            labels: Mapping[str, tuple[str, float | None]], alpha: float) -> list[Judgement]:
    """The family's verdicts (family.py): Holm over the primary rows' difference and equivalence
    tests, with each row's detectable difference; the other rows become exploratory."""
    chosen = [is_primary(j, primary, labels) for j in judgements]
    rows = [(j.interval, j.margin, j.better == "higher") for j in judgements]
    size = sum(chosen)
    return [attrs.evolve(j, verdict=verdict, primary=chosen[i], p_difference=difference, p_equivalence=equivalence,
                         detectable=detectable_difference(j.interval, alpha, size))
            for i, (j, (verdict, difference, equivalence)) in enumerate(
                zip(judgements, family_verdicts(rows, chosen, alpha)))]


def judge(settings: Mapping[str, Sequence[Mapping[str, Any]]], pairs: Sequence[tuple[str, str]],
          metric_rules: Sequence[Rule], seeds: Sequence[int], *, budget: str = "iterations",
          matched_reward: Sequence[float] = (), confidence: float = 0.95,
          primary: Sequence[Mapping[str, Any]] = ()) -> list[Judgement]:
    """Every pair x view x judged metric, with its interval and its verdict, corrected over the
    family of primary comparisons (is_primary)."""
    out = []
    for a, b in pairs:
        both = [*settings[a], *settings[b]]
        views = ([(MATCHED_DECLARED, "reward", level) for level in matched_reward] if matched_reward
                 else [(MATCHED_POST_HOC, "reward", level) for level in [common_reward_level(both)] if level is not None])
        views.append((f"equal {budget}", budget, common_budget(both, budget)))
        for view, axis, at in views:
            for rule in metric_rules:
                if axis == "reward" and rule.key == REWARD_KEY:
                    continue  # matched by construction
                a_values = per_seed(settings[a], seeds, rule.key, axis, at)
                b_values = per_seed(settings[b], seeds, rule.key, axis, at)
                if all(v is None for v in a_values + b_values):
                    continue  # a metric neither side reports
                interval = paired_interval(a_values, b_values, confidence)
                # where each run crossed: the iteration read like any other key at the level
                crossed = ((per_seed(settings[a], seeds, "iteration", axis, at),
                            per_seed(settings[b], seeds, "iteration", axis, at)) if axis == "reward" else ((), ()))
                out.append(Judgement(a_crossed=crossed[0], b_crossed=crossed[1],
                    view=view, a=a, b=b, metric=rule.key, better="higher" if rule.higher_is_better else "lower",
                    at=at, a_values=a_values, b_values=b_values, interval=interval, margin=rule.margin,
                    margin_source=rule.margin_source, bounds=difference_bounds(rule.bounds), verdict=INCONCLUSIVE))
    labels = {label: (runs[0]["arm"], runs[0]["beta"]) for label, runs in settings.items()}
    return correct(out, primary, labels, 1 - confidence)
