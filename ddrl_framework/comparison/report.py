"""``ddrl report RUN_DIR``: the comparison report from saved metrics (no model is loaded).

Writes ``report.md``, ``reward.png``, ``fidelity.png`` and ``pareto.png`` into the comparison
folder. Every number is read from the runs' ``eval.jsonl`` / ``metrics.jsonl`` and from
``references.json``; which plugin and distribution provided each component, from the runs'
``config.json``.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ddrl_framework.errors import UserError
from ddrl_framework.evaluation.plots import save_figure
from ddrl_framework.kit.io import atomic_write_bytes
from ddrl_framework.running.metrics_log import read_metrics

FIDELITY = "fd"


def _mean_sd(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _fmt(values: list[float], digits: int = 3) -> str:
    mean, sd = _mean_sd(values)
    if mean != mean:
        return "-"
    return f"{mean:.{digits}f} ± {sd:.{digits}f}" if len(values) > 1 else f"{mean:.{digits}f}"


def load(folder: Path) -> tuple[dict, dict[str, list[dict]], dict | None]:
    """The manifest, the runs grouped by setting (arm and beta), and the reference values."""
    manifest_path = folder / "compare.json"
    if not manifest_path.is_file():
        raise UserError(f"{folder} is not a comparison folder: no compare.json (run `ddrl compare`)")
    manifest = json.loads(manifest_path.read_text())
    settings: dict[str, list[dict]] = defaultdict(list)
    for run in manifest["runs"]:
        evals = read_metrics(folder / run["dir"] / "eval.jsonl")
        train = read_metrics(folder / run["dir"] / "metrics.jsonl")
        if evals and train:
            label = run["arm"] + ("" if run["beta"] is None else f" β={run['beta']:g}")
            settings[label].append({**run, "eval": evals, "train": train})
    references = folder / "references.json"
    return manifest, dict(settings), json.loads(references.read_text()) if references.is_file() else None


def final_rows(manifest: dict, settings: dict[str, list[dict]]) -> list[dict[str, Any]]:
    arms = {a["name"]: a for a in manifest["compare"]["arms"]}
    common = manifest["compare"].get("common_target")
    rows = []
    for label, runs in settings.items():
        arm = arms.get(runs[0]["arm"], {})
        last = [r["eval"][-1] for r in runs]
        first = [r["eval"][0] for r in runs]
        get = lambda records, key: [r[key] for r in records if key in r]
        rows.append({
            "label": label, "arm": runs[0]["arm"], "beta": runs[0]["beta"], "seeds": len(runs),
            "iterations": min(r["eval"][-1]["iteration"] for r in runs),
            "reward": get(last, "reward_mean"),
            "reward_gain": [b["reward_mean"] - a["reward_mean"] for a, b in zip(first, last)],
            "fd": get(last, FIDELITY),
            "fd_change": [b[FIDELITY] - a[FIDELITY] for a, b in zip(first, last) if FIDELITY in b],
            "own": get(last, arm["own_target"]) if arm.get("own_target") else [],
            "common": get(last, common) if common else [],
            "entropy": get(last, "class_entropy"),
            "drift": get(last, "drift_kl"),
            "seconds": [statistics.median(x["seconds"] for x in r["train"]) for r in runs],
            "sample": f"{runs[0]['dir']}/samples_final.png",
        })
    return rows


def _curves(settings, key, path, ylabel):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = sorted({runs[0]["arm"] for runs in settings.values()})
    fig, axes = plt.subplots(1, len(arms), figsize=(4.2 * len(arms), 3.3), squeeze=False, sharey=True)
    for ax, arm in zip(axes[0], arms):
        for label, runs in settings.items():
            if runs[0]["arm"] != arm:
                continue
            iterations = sorted({r["iteration"] for r in runs[0]["eval"]})
            table = [[next((e[key] for e in run["eval"] if e["iteration"] == i and key in e), np.nan)
                      for i in iterations] for run in runs]
            values = np.array(table, dtype=float)
            mean, sd = np.nanmean(values, 0), np.nanstd(values, 0)
            ax.plot(iterations, mean, label=label)
            ax.fill_between(iterations, mean - sd, mean + sd, alpha=0.2)
        ax.set_title(arm)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel(ylabel)
    fig.tight_layout()
    save_figure(fig, path)


def _pareto(rows, references, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2))
    for arm in sorted({r["arm"] for r in rows}):
        points = sorted((_mean_sd(r["fd"]) + _mean_sd(r["reward"]) + (r["label"],))
                        for r in rows if r["arm"] == arm and r["fd"])
        if not points:
            continue
        fd, fd_sd, reward, reward_sd, labels = zip(*points)
        ax.errorbar(fd, reward, xerr=fd_sd, yerr=reward_sd, marker="o", capsize=3, label=arm)
        for x, y, label in zip(fd, reward, labels):
            ax.annotate(label.split(" ")[-1], (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    if references:
        start = references["evaluation_repeats"]
        fd0 = [r[FIDELITY] for r in start if FIDELITY in r]
        if fd0:
            ax.errorbar([np.mean(fd0)], [np.mean([r["reward_mean"] for r in start])], xerr=[np.std(fd0)],
                        marker="*", markersize=12, color="black", label="reference (noise spread)")
    ax.set_xlabel("Frechet distance to held-out data (lower is better)")
    ax.set_ylabel("reward")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def _noise_section(references: dict | None) -> tuple[list[str], float | None]:
    if not references:
        return ["(no references.json: the evaluation spread was not measured)"], None
    repeats = references["evaluation_repeats"]
    lines = [f"The reference model evaluated {len(repeats)} times on fresh noise "
             "(the spread of one evaluation):", "", "| metric | mean | sd |", "|---|---|---|"]
    fd_sd = None
    for key in sorted({k for r in repeats for k in r} - {"iteration", "seconds"}):
        mean, sd = _mean_sd([r[key] for r in repeats if key in r])
        lines.append(f"| {key} | {mean:.4g} | {sd:.3g} |")
        if key == FIDELITY:
            fd_sd = sd
    return lines, fd_sd


def _targets_section(references: dict | None) -> list[str]:
    if not references or not references.get("targets"):
        return []
    targets = references["targets"]
    keys = sorted({k for t in targets.values() for k in t["values"]})
    lines = ["## Targets", "", "Each target is the held-out data reweighted to an objective's "
             "optimum; its row is what a policy that reached it exactly would score "
             "(resampled to the evaluation size, so FD rows are floors, not zeros).", "",
             "| target | weighting | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    for name, target in targets.items():
        cells = [f"{target['values'][k]:.4g}" if k in target["values"] else "-" for k in keys]
        label = name.replace("|", "\\|")  # a | would split the table cell
        lines.append(f"| {label} | {target['weighting']} T={target['temperature']:g} | " + " | ".join(cells) + " |")
    return lines + [""]


def _provenance_rows(folder: Path, manifest: dict) -> dict[tuple, list[str]]:
    """``(component, name, plugin, distribution)`` -> the runs that used it, from each run's
    ``config.json`` (runs recorded before provenance was: none)."""
    rows: dict[tuple, list[str]] = defaultdict(list)
    for run in manifest["runs"]:
        config = folder / run["dir"] / "config.json"
        components = json.loads(config.read_text()).get("components", {}) if config.is_file() else {}
        for key, value in components.items():
            for item in value if isinstance(value, list) else [value]:
                dist = f"{item['distribution']} {item['version']}" if item.get("distribution") else "(not installed)"
                rows[(key, item["name"], item["plugin"], dist)].append(run["name"])
    return rows


def _components_section(folder: Path, manifest: dict) -> list[str]:
    """Which plugin and distribution provided each component; a component name provided by
    different plugins in different runs is flagged (the runs are then not comparable)."""
    rows = _provenance_rows(folder, manifest)
    if not rows:
        return []
    providers = defaultdict(set)
    for key, name, plugin, dist in rows:
        providers[(key, name)].add((plugin, dist))
    lines = ["## Components", "", "| component | name | plugin | distribution | runs |", "|---|---|---|---|---|"]
    total = len(manifest["runs"])
    for (key, name, plugin, dist), runs in sorted(rows.items()):
        used = "all" if len(runs) == total else ", ".join(runs)
        flag = " (differs across runs)" if len(providers[(key, name)]) > 1 else ""
        lines.append(f"| {key} | {name} | {plugin} | {dist}{flag} | {used} |")
    return lines + [""]


def write_report(folder: str | Path) -> Path:
    folder = Path(folder)
    manifest, settings, references = load(folder)
    if not settings:
        raise UserError(f"{folder}: no run has metrics yet")
    rows = final_rows(manifest, settings)
    _curves(settings, "reward_mean", folder / "reward.png", "reward (evaluation)")
    if any(r["fd"] for r in rows):
        _curves(settings, FIDELITY, folder / "fidelity.png", "Frechet distance")
        _pareto(rows, references, folder / "pareto.png")
    noise, fd_sd = _noise_section(references)
    seeds = manifest["compare"]["seeds"]
    lines = [f"# Comparison: {manifest['config']}", "",
             f"Arms: {', '.join(a['name'] for a in manifest['compare']['arms'])}; seeds {seeds}; "
             "the same pretrained reference, data order, rollout budget and evaluation noise. "
             "Values are mean ± sd over seeds at the last evaluation.", "",
             "| setting | seeds | iters | reward | reward gain | FD | FD change | FD to own optimum "
             "| FD to common target | class entropy | drift KL | s/iteration |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        change = _fmt(r["fd_change"], 1)
        if fd_sd and r["fd_change"] and abs(_mean_sd(r["fd_change"])[0]) < 2 * fd_sd:
            change += " (within noise)"
        lines.append(f"| {r['label']} | {r['seeds']} | {r['iterations']} | {_fmt(r['reward'])} | "
                     f"{_fmt(r['reward_gain'])} | {_fmt(r['fd'], 1)} | {change} | "
                     f"{_fmt(r['own'], 1)} | {_fmt(r['common'], 1)} | {_fmt(r['entropy'])} | "
                     f"{_fmt(r['drift'], 2)} | {_fmt(r['seconds'], 2)} |")
    lines += ["", "![reward](reward.png)", ""]
    if (folder / "fidelity.png").is_file():
        lines += ["![fidelity](fidelity.png)", "", "![pareto](pareto.png)", ""]
    lines += ["## Evaluation noise", "", *noise, ""]
    if fd_sd:
        lines += [f"FD values closer than {2 * fd_sd:.1f} (2 sd of one evaluation) are within "
                  "evaluation noise; with several seeds, compare means against their seed sd too.", ""]
    lines += _targets_section(references) + _components_section(folder, manifest)
    lines += ["## Samples (seed of the first run of each setting)", ""]
    lines += [f"- {r['label']}: ![{r['label']}]({r['sample']})" for r in rows]
    path = folder / "report.md"
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())
    return path
