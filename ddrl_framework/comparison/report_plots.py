"""The report's plots: a metric against iteration (one panel per arm, in the config's order, one
line per beta, a band of the 95% t interval of the mean over seeds) and the reward-fidelity
trade-off (every setting its own marker and legend entry, so no label overlaps another)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ddrl_framework.comparison.statistics import t_quantile
from ddrl_framework.evaluation.plots import save_figure
from ddrl_framework.metric_key import REWARD_KEY

MARKERS = "osD^vP*Xh<>"


def mean_and_half_width(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """The mean of ``values`` and the half-width of its t interval (0 for one value; NaN for none)."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return math.nan, math.nan
    mean = float(np.mean(finite))
    if len(finite) < 2:
        return mean, 0.0
    sd = float(np.std(finite, ddof=1))
    return mean, t_quantile(0.5 + confidence / 2, len(finite) - 1) * sd / math.sqrt(len(finite))


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    return plt, MaxNLocator


def curves(settings: Mapping[str, Sequence[dict]], arm_order: Sequence[str], key: str, path: Path,
           ylabel: str, title: str, confidence: float = 0.95) -> None:
    plt, MaxNLocator = _pyplot()
    arms = [a for a in arm_order if any(runs[0]["arm"] == a for runs in settings.values())]
    fig, axes = plt.subplots(1, len(arms), figsize=(4.2 * len(arms), 3.4), squeeze=False, sharey=True)
    for ax, arm in zip(axes[0], arms):
        for label, runs in settings.items():
            if runs[0]["arm"] != arm:
                continue
            iterations = sorted({r["iteration"] for r in runs[0]["eval"]})
            columns = [[next((e[key] for e in run["eval"] if e["iteration"] == i and key in e), None)
                        for run in runs] for i in iterations]
            stats = np.array([mean_and_half_width(c, confidence) for c in columns], dtype=float)
            ax.plot(iterations, stats[:, 0], label=f"{label} (n={len(runs)})")
            ax.fill_between(iterations, stats[:, 0] - stats[:, 1], stats[:, 0] + stats[:, 1], alpha=0.2)
        ax.set_title(arm)
        ax.set_xlabel("iteration")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel(ylabel)
    fig.suptitle(f"{title}; bands: {confidence:.0%} t interval of the mean over seeds", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def pareto(rows: Sequence[dict[str, Any]], arm_order: Sequence[str], references: dict | None, path: Path,
           reward_label: str, confidence: float = 0.95, fidelity: str = "") -> None:
    """Each setting's final reward against its final ``fidelity`` (the rows' "fidelity"), beside
    the reference's."""
    plt, _ = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for a, arm in enumerate(arm_order):
        for m, row in enumerate(r for r in rows if r["arm"] == arm and r["fidelity"]):
            fd, fd_half = mean_and_half_width(row["fidelity"], confidence)
            reward, reward_half = mean_and_half_width(row["reward"], confidence)
            ax.errorbar([fd], [reward], xerr=[fd_half], yerr=[reward_half], marker=MARKERS[m % len(MARKERS)],
                        color=colors[a % len(colors)], capsize=3, linestyle="none", label=row["label"])
    if references:
        start = references["evaluation_repeats"]
        fd0 = [r[fidelity] for r in start if fidelity in r]
        if fd0:
            ax.errorbar([np.mean(fd0)], [np.mean([r[REWARD_KEY] for r in start])], xerr=[np.std(fd0)],
                        marker="*", markersize=12, color="black", linestyle="none",
                        label="reference (sd of one evaluation)")
    ax.set_xlabel("Frechet distance to held-out data (lower is better)")
    ax.set_ylabel(reward_label)
    ax.set_title(f"final values; bars: {confidence:.0%} t interval over seeds", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    save_figure(fig, path)


def forest(judgements: Sequence[Any], path: Path) -> None:
    """Every verdict's interval of A - B, one panel per metric, its ±margin shaded, 0 marked."""
    plt, _ = _pyplot()
    metrics = list(dict.fromkeys(j.metric for j in judgements))
    rows = max(sum(j.metric == m for j in judgements) for m in metrics)
    cols = min(2, len(metrics))
    grid = math.ceil(len(metrics) / cols)
    fig, axes = plt.subplots(grid, cols, figsize=(6.5 * cols, grid * (1.4 + 0.45 * rows)), squeeze=False)
    for ax in axes.flat[len(metrics):]:
        ax.set_visible(False)
    for ax, metric in zip(axes.flat, metrics):
        mine = [j for j in judgements if j.metric == metric]
        for y, j in enumerate(mine):
            low, high = (j.interval.low, j.interval.high) if j.interval.defined else (j.interval.mean,) * 2
            ax.plot([low, high], [y, y], color="C0", lw=2)
            ax.plot([j.interval.mean], [y], "o", color="C0")
            if j.margin is not None:
                ax.fill_betweenx([y - 0.4, y + 0.4], -j.margin, j.margin, color="C2", alpha=0.15, lw=0)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_yticks(range(len(mine)), [f"{j.a} - {j.b}\n{j.view}: {j.verdict}" for j in mine], fontsize=6)
        ax.set_title(f"{metric} ({mine[0].better} is better); green: ±margin", fontsize=8)
        ax.invert_yaxis()
        ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    save_figure(fig, path)
