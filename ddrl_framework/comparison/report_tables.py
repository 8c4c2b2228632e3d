"""The report's tables, as Markdown lines: final values, verdicts, evaluation noise, targets."""

from __future__ import annotations

import math
import statistics
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from ddrl_framework.comparison.metric_keys import Declared, cut, fidelity_key, final_columns
from ddrl_framework.comparison.report_plots import mean_and_half_width
from ddrl_framework.comparison.statistics import A_BETTER, B_BETTER, EQUIVALENT
from ddrl_framework.comparison.verdicts import Judgement
from ddrl_framework.metric_key import NON_NEGATIVE, REWARD_KEY, UNBOUNDED
from ddrl_framework.roles import LOSS_PREFIX, POLICY_LOSS_KEY

NOT_NOISE = {"iteration", "seconds"}
DECLARED = "metric:"  # a final row's key for a declared column: "metric:<key>"


def fmt(values: Sequence[float], digits: int = 3, confidence: float = 0.95,
        bounds: tuple[float, float] = UNBOUNDED) -> str:
    """``mean [low, high]`` (the t interval of the mean over seeds, cut to ``bounds``), or the
    one value, or "-"."""
    mean, half = mean_and_half_width(values, confidence)
    if mean != mean:
        return "-"
    if len([v for v in values if v is not None]) < 2:
        return f"{mean:.{digits}f}"
    low, high = cut(mean - half, mean + half, bounds)
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def regularizer_loss(train: Sequence[Mapping[str, Any]], tail: float = 0.1) -> float | None:
    """The mean of the regularizer's ``loss_*`` entries (all but ``loss_policy``) over the last
    ``tail`` of the run's iterations; None when the regularizer logs no loss (``none``)."""
    window = train[-max(1, math.ceil(tail * len(train))):]
    values = [v for record in window for k, v in record.items()
              if k.startswith(LOSS_PREFIX) and k != POLICY_LOSS_KEY]
    return statistics.fmean(values) if values else None


def unregularized(arm: Mapping[str, Any]) -> bool:
    """An arm with the ``none`` regularizer: its logged zero loss is shown as "-", not as a penalty
    that happened to be 0."""
    return (arm.get("regularizer") or {}).get("name") == "none"


def network_passes(train: Sequence[Mapping[str, Any]]) -> float | None:
    values = [t["network_passes"] for t in train if "network_passes" in t]
    return statistics.median(values) if values else None


def final_rows(manifest: dict, settings: dict[str, list[dict]], declared: Declared) -> list[dict[str, Any]]:
    """One row per setting: the final values of the reward, the fidelity key (and their change
    from the start), the FDs to the targets, each declared column's key, and the cost."""
    arms = {a["name"]: a for a in manifest["compare"]["arms"]}
    common = manifest["compare"].get("common_target")
    fidelity = fidelity_key(declared)
    rows = []
    for label, runs in settings.items():
        arm = arms.get(runs[0]["arm"], {})
        last = [r["eval"][-1] for r in runs]
        first = [r["eval"][0] for r in runs]
        get = lambda records, key: [r[key] for r in records if key in r]  # noqa: E731
        rows.append({
            "label": label, "arm": runs[0]["arm"], "beta": runs[0]["beta"], "seeds": len(runs),
            "iterations": min(r["eval"][-1]["iteration"] for r in runs),
            "reward": get(last, REWARD_KEY),
            "reward_gain": [b[REWARD_KEY] - a[REWARD_KEY] for a, b in zip(first, last)],
            "fidelity": get(last, fidelity) if fidelity else [],
            "fidelity_change": [b[fidelity] - a[fidelity] for a, b in zip(first, last) if fidelity in b]
                               if fidelity else [],
            "own": get(last, arm["own_target"]) if arm.get("own_target") else None,
            "common": get(last, common) if common else [],
            **{DECLARED + k.name: get(last, k.name) for k in final_columns(declared)},
            "reg_loss": [] if unregularized(arm) else [
                x for x in (regularizer_loss(r["train"]) for r in runs) if x is not None],
            "seconds": [statistics.median(x["seconds"] for x in r["train"]) for r in runs],
            "passes": [x for x in (network_passes(r["train"]) for r in runs) if x is not None],
            "runs": [(r["seed"], r["dir"]) for r in runs],
        })
    return rows


def columns(declared: Declared) -> list[tuple[str, str, int, tuple[float, float]]]:
    """``(header, row key, digits, range)`` of each final-table column: the reward's, the
    fidelity key's and its change, the FDs to the targets, each declared column (its metric's
    header, digits and range: an interval is cut to it), the cost's."""
    fidelity = declared.get(fidelity_key(declared) or "")
    out = [("reward", "reward", 3, UNBOUNDED), ("reward gain", "reward_gain", 3, UNBOUNDED)]
    if fidelity is not None:
        out += [(fidelity.column, "fidelity", fidelity.digits, fidelity.bounds),
                (f"{fidelity.column} change", "fidelity_change", fidelity.digits, UNBOUNDED)]
    out += [("FD to own optimum", "own", 1, NON_NEGATIVE), ("FD to common target", "common", 1, NON_NEGATIVE)]
    out += [(k.column, DECLARED + k.name, k.digits, k.bounds) for k in final_columns(declared)]
    return out + [("regularizer loss", "reg_loss", 4, UNBOUNDED), ("s/iteration (median)", "seconds", 2, NON_NEGATIVE),
                  ("network passes/iteration", "passes", 0, NON_NEGATIVE)]


def final_table(rows: Sequence[dict[str, Any]], confidence: float, declared: Declared) -> list[str]:
    """Final values; a column no setting has is left out; "FD to own optimum" is "n/a" for an
    arm without an ``own_target``."""
    shown = [c for c in columns(declared) if any(r[c[1]] for r in rows)]
    lines = ["| setting | seeds | iters | " + " | ".join(h for h, _, _, _ in shown) + " |",
             "|---|---|---|" + "---|" * len(shown)]
    for r in rows:
        cells = ["n/a" if r[k] is None else fmt(r[k], d, confidence, bounds) for _, k, d, bounds in shown]
        lines.append(f"| {r['label']} | {r['seeds']} | {r['iterations']} | " + " | ".join(cells) + " |")
    return lines


def _value(x: float | None, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}g}"


def _winner(j: Judgement) -> str:
    return {A_BETTER: f" ({j.a})", B_BETTER: f" ({j.b})"}.get(j.verdict, "")


def _p(value: float) -> str:
    return "-" if value != value else f"{value:.3g}"


def _margin(j: Judgement) -> str:
    return "-" if j.margin is None else f"±{j.margin:.3g} ({j.margin_source})"


def _per_seed(values: Sequence[float | None], crossed: Sequence[float | None]) -> str:
    """Each seed's value, with the iteration where its run crossed the matched reward (``@it``)."""
    if not crossed:
        return ", ".join(_value(v) for v in values)
    return ", ".join(_value(v) if c is None else f"{_value(v)} @it {c:.3g}" for v, c in zip(values, crossed))


def verdict_table(judgements: Sequence[Judgement]) -> list[str]:
    lines = ["| A | B | metric (better) | view, at | A per seed | B per seed | A - B (n) | interval "
             "| margin | p, Holm: difference / equivalence | detectable | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for j in judgements:
        interval = j.interval
        low, high = cut(interval.low, interval.high, j.bounds)
        shown = f"[{low:.4g}, {high:.4g}]" if interval.defined else "(fewer than 2 pairs)"
        verdict = f"**{j.verdict}**{_winner(j)}" if j.primary else j.verdict
        lines.append(
            f"| {j.a} | {j.b} | {j.metric} ({j.better}) | {j.view}, {j.at:.4g} | "
            f"{_per_seed(j.a_values, j.a_crossed)} | {_per_seed(j.b_values, j.b_crossed)} | "
            f"{_value(interval.mean if interval.n else None)} ({interval.n}) | {shown} | "
            f"{_margin(j)} | {_p(j.p_difference)} / {_p(j.p_equivalence)} | "
            f"{'-' if not j.primary or j.detectable == float('inf') else f'±{j.detectable:.3g}'} | {verdict} |")
    return lines


def _plainly(j: Judgement) -> str:
    """The row's finding in words."""
    if j.verdict in (A_BETTER, B_BETTER):
        winner, loser = (j.a, j.b) if j.verdict == A_BETTER else (j.b, j.a)
        return f"**{winner}** has a better {j.metric} than {loser}"
    if j.verdict == EQUIVALENT:
        return f"{j.a} and {j.b} have the same {j.metric}, within the margin"
    return f"No conclusion on {j.metric} between {j.a} and {j.b}"


def summary_lines(judgements: Sequence[Judgement], seeds: int) -> list[str]:
    """The report's first section: one plain sentence per primary comparison, and the family."""
    primary = [j for j in judgements if j.primary]
    lines = ["## Summary", ""]
    if seeds < 3:
        lines += [f"**{seeds} seed(s)**: fewer than 3 paired seeds can rarely conclude anything; every "
                  "verdict below is likely \"inconclusive\". Add seeds to `[compare].seeds`.", ""]
    if not primary:
        return lines + ["(no comparison to judge)", ""]
    for j in primary:
        i = j.interval
        low, high = cut(i.low, i.high, j.bounds)
        estimate = (f"A - B = {i.mean:.4g} [{low:.4g}, {high:.4g}] over {i.n} seeds" if i.defined
                    else f"{i.n} paired seed(s), no interval")
        detectable = "" if j.detectable == float("inf") else f"; it could detect ±{j.detectable:.3g}"
        lines.append(f"- {_plainly(j)}. {j.metric} ({j.better} is better), {j.a} (A) against {j.b} (B), "
                     f"{j.view} at {j.at:.4g}: {estimate}, margin {_margin(j)}: **{j.verdict}**{_winner(j)}"
                     f"{detectable}.")
    others = len(judgements) - len(primary)
    lines += ["", f"The family: {len(primary)} primary comparison(s), {2 * len(primary)} tests (a difference and an "
              "equivalence test each), Holm-corrected at the stated level"
              + (f"; the {others} other row(s) are exploratory estimates with no verdict." if others else "."), ""]
    return lines


def noise_table(references: Mapping[str, Any], summarized: Collection[str] = ()) -> list[str]:
    """The reference's evaluation spread, per key (``summarized``: keys another key sums up, left out)."""
    repeats = references["evaluation_repeats"]
    lines = [f"The reference model evaluated {len(repeats)} times on fresh noise (the spread of one "
             "evaluation, out of sample: no evaluation noise is reused):", "",
             "| metric | mean | sd |", "|---|---|---|"]
    for key in sorted({k for r in repeats for k in r} - NOT_NOISE - set(summarized)):
        values = [r[key] for r in repeats if key in r]
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        lines.append(f"| {key} | {statistics.fmean(values):.4g} | {sd:.3g} |")
    return lines


def targets_table(references: Mapping[str, Any], summarized: Collection[str] = ()) -> list[str]:
    targets = references.get("targets") or {}
    if not targets:
        return []
    keys = sorted({k for t in targets.values() for k in t["values"]} - NOT_NOISE - set(summarized))
    out_of_sample = all("spread" in t for t in targets.values())
    how = (f"drawn from one half of the held-out data (resampled by the target's weights to the evaluation "
           f"size) and scored against the other half, over {next(iter(targets.values())).get('splits', '?')} "
           "random splits: mean ± sd. FD rows are out-of-sample floors at the comparison's sample size "
           "(conservative: the reference set is half the size the runs are scored against)"
           if out_of_sample else "resampled from the same held-out set they are scored against "
           "(in-sample: these FD floors are biased low; rerun `ddrl compare` to measure them out of sample)")
    lines = ["## Targets", "", "Each target is the held-out data reweighted to an objective's optimum; its row "
             f"is what a policy that reached it exactly would score, {how}.", "",
             "| target | weighting | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    for name, target in targets.items():
        spread = target.get("spread", {})
        cells = [(f"{target['values'][k]:.4g}" + (f" ± {spread[k]:.2g}" if k in spread else ""))
                 if k in target["values"] else "-" for k in keys]
        label = name.replace("|", "\\|")  # a | would split the table cell
        lines.append(f"| {label} | {target['weighting']} T={target['temperature']:g} | " + " | ".join(cells) + " |")
    return lines + [""]


def samples_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Every run's start grid beside its final grid (the same noise)."""
    lines = ["| setting | seed | start | final |", "|---|---|---|---|"]
    for r in rows:
        for seed, folder in r["runs"]:
            lines.append(f"| {r['label']} | {seed} | ![]({folder}/samples_start.png) | ![]({folder}/samples_final.png) |")
    return lines
