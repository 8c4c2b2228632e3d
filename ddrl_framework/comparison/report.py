"""``ddrl report RUN_DIR``: the comparison report from saved metrics (no model is loaded).

Writes ``report.md``, ``verdicts.json``, ``reward.png``, ``fidelity.png`` and ``pareto.png`` into the comparison
folder. Every number is read from the runs' ``eval.jsonl`` / ``metrics.jsonl`` and from
``references.json``; which plugin and distribution provided each component, from the runs'
``config.json``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import attrs

from ddrl_framework import __version__
from ddrl_framework.comparison.gallery import extra_sections, write_gallery
from ddrl_framework.comparison.metric_keys import Declared, declared_keys, fidelity_key, summarized
from ddrl_framework.comparison.report_plots import curves, forest, pareto
from ddrl_framework.comparison.report_tables import (
    final_rows,
    final_table,
    noise_table,
    samples_table,
    summary_lines,
    targets_table,
    verdict_table,
)
from ddrl_framework.comparison.verdicts import judge, resolve_pairs, rules
from ddrl_framework.errors import UserError
from ddrl_framework.kit.io import atomic_write_bytes
from ddrl_framework.metric_key import REWARD_KEY
from ddrl_framework.registry import load_registry
from ddrl_framework.running.run_dir import distribution_of, recorded_components
from ddrl_framework.running.metrics_log import read_metrics


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
            unit = f" {run['beta_unit']}" if run.get("beta_unit") else ""
            label = run["arm"] + ("" if run["beta"] is None else f" β={run['beta']:g}{unit}")
            settings[label].append({**run, "eval": evals, "train": train})
    references = folder / "references.json"
    return manifest, dict(settings), json.loads(references.read_text()) if references.is_file() else None


def _provenance_rows(folder: Path, manifest: dict) -> dict[tuple, list[str]]:
    """``(component, name, plugin, distribution)`` -> the runs that used it, from each run's
    ``config.json`` (runs recorded before provenance was: none)."""
    rows: dict[tuple, list[str]] = defaultdict(list)
    for run in manifest["runs"]:
        for key, item in recorded_components(folder / run["dir"]):
            dist = distribution_of(item) or "(not installed)"
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


def reward_name(folder: Path, manifest: dict) -> str:
    """The experiment's reward as its config names it, e.g. "brightness" or "0.5 x a + 0.5 x b"."""
    for run in manifest["runs"]:
        config = folder / run["dir"] / "config.json"
        if config.is_file():
            rewards = json.loads(config.read_text()).get("experiment", {}).get("rewards", [])
            if rewards:
                if len(rewards) == 1 and rewards[0].get("weight", 1.0) == 1.0:
                    return rewards[0]["name"]
                return " + ".join(f"{r.get('weight', 1.0):g} x {r['name']}" for r in rewards)
    return "reward"


def recorded_metrics(folder: Path, manifest: dict) -> list[dict]:
    """The ``[[metrics]]`` tables the runs recorded in their ``config.json`` (name and options)."""
    tables = []
    for run in manifest["runs"]:
        config = folder / run["dir"] / "config.json"
        if config.is_file():
            tables += json.loads(config.read_text()).get("experiment", {}).get("metrics", [])
    return tables


def declared(folder: Path, manifest: dict) -> Declared:
    """What the runs' metrics declare of each key they report (comparison/metric_keys.py)."""
    return declared_keys(recorded_metrics(folder, manifest), load_registry())


def _verdicts(manifest: dict, settings: dict[str, list[dict]], keys_declared: Declared):
    compare = manifest["compare"]
    labels = {label: (runs[0]["arm"], runs[0]["beta"]) for label, runs in settings.items()}
    keys = list(dict.fromkeys(k for runs in settings.values() for r in runs for e in r["eval"] for k in e))
    pairs = resolve_pairs(compare, labels)
    return judge(settings, pairs, rules(compare, keys, keys_declared), compare["seeds"],
                 budget=compare.get("budget", "iterations"), matched_reward=compare.get("matched_reward", ()),
                 confidence=compare.get("confidence", 0.95), primary=compare.get("primary", ()))


def _save_verdicts(folder: Path, judgements) -> None:
    data = [attrs.asdict(j) for j in judgements]
    atomic_write_bytes(folder / "verdicts.json", json.dumps(data, indent=2, default=str).encode())


def _header(manifest: dict, reward: str, confidence: float) -> list[str]:
    seeds = manifest["compare"]["seeds"]
    return [f"# Comparison of {', '.join(a['name'] for a in manifest['compare']['arms'])} on the reward "
            f"'{reward}' ({manifest['config']})", "",
            f"Seeds {seeds}, paired across arms: a seed fixes the data order and the rollout noise, and "
            "every run shares the evaluation noise, so every arm sees the same draws and the seed's own "
            f"luck cancels in a difference. Values are the mean over seeds at the last evaluation, with the {confidence:.0%} "
            "t interval of the mean in brackets (one seed: the value alone). Report written by "
            f"ddrl-framework {__version__}; each component's plugin and version are under Components.", ""]


def _units_note(manifest: dict) -> list[str]:
    """A warning when the swept betas are in different units (the same number, another strength)."""
    units = sorted({run["beta_unit"] for run in manifest["runs"] if run.get("beta") is not None and run.get("beta_unit")})
    if len(units) < 2:
        return []
    return [f"**The arms' betas are in different units ({', '.join(units)})**: a beta in one is not the same "
            "strength as the same number in another (docs/configuration.md, \"Units of beta\").", ""]


def _unmatched(judgements) -> list[str]:
    """The pairs read at no matched reward (no level above every run's start that all reach)."""
    pairs = list(dict.fromkeys((j.a, j.b) for j in judgements))
    matched = {(j.a, j.b) for j in judgements if j.view.startswith("matched reward")}
    missing = [f"{a} / {b}" for a, b in pairs if (a, b) not in matched]
    return [f"Not compared at matched reward (no reward level above every run's start that every run of "
            f"both reaches, or no other metric): {'; '.join(missing)}.", ""] if missing else []


def _statistics_section(judgements, budget: str, confidence: float) -> list[str]:
    if not judgements:
        return ["## Verdicts", "", "(no pair of settings to compare)", ""]
    return ["## Verdicts", "",
            "Computed, never written by hand (docs/comparisons.md, \"Statistics\"). Each pair is read at "
            "matched reward (each run's metric where its evaluation reward, smoothed over 3 evaluations, first "
            f"reaches the level, linearly interpolated between evaluations) and at equal {budget}. A - B is the mean of the "
            f"per-seed differences; its interval is the paired t interval at {confidence:.0%} over the n "
            "seeds where both runs reached the level. Each primary row has two tests: TOST against "
            "±margin (equivalence) and the paired t test of A - B = 0 (difference); all of the family's "
            "tests are Holm-corrected. Verdict: **equivalent within the margin** if the corrected "
            "equivalence p is below the level; else **A better** or **B better** if the corrected "
            "difference p is, in the metric's good direction; else **inconclusive**. \"detectable\" is "
            "the smallest true difference the row finds with 80% power at its seeds.", "",
            *verdict_table(judgements), "",
            *_unmatched(judgements),
            "![verdicts: each interval of A - B, with its margin](verdicts.png)", ""]


def clipping_note(settings: dict[str, list[dict]]) -> list[str]:
    """A warning for each setting whose gradient was clipped in most iterations (``grad_clipped``
    in metrics.jsonl): its fixed point is that of the clipped, not of the stated, gradient."""
    notes = []
    for label, runs in settings.items():
        fractions = [r["grad_clipped"] for run in runs for r in run["train"] if "grad_clipped" in r]
        if fractions and sum(fractions) / len(fractions) > 0.5:
            notes.append(f"- **{label}**: clipped in {sum(fractions) / len(fractions):.0%} of its optimizer steps")
    if not notes:
        return []
    return ["## Gradient clipping", "",
            "The gradient norm exceeded `train.max_grad_norm` in most updates of these settings, so they "
            "follow the normalized gradient `g / |g|` and settle where its mean is 0, which weights each "
            "update by `1 / |g|` and moves the balance between the reward and the regularizer: their beta "
            "does not mean what it says (docs/concepts.md, \"What each estimator converges to\").", "",
            *notes, ""]


def write_report(folder: str | Path) -> Path:
    """``report.md``, ``verdicts.json`` and the plots, into the comparison folder."""
    folder = Path(folder)
    manifest, settings, references = load(folder)
    if not settings:
        raise UserError(f"{folder}: no run has metrics yet")
    compare = manifest["compare"]
    confidence = compare.get("confidence", 0.95)
    arm_order = [a["name"] for a in compare["arms"]]
    reward = reward_name(folder, manifest)
    keys_declared = declared(folder, manifest)
    rows = final_rows(manifest, settings, keys_declared)
    judgements = _verdicts(manifest, settings, keys_declared)
    _save_verdicts(folder, judgements)
    if judgements:
        forest(judgements, folder / "verdicts.png")
    curves(settings, arm_order, REWARD_KEY, folder / "reward.png", f"reward: {reward} (evaluation mean)",
           f"reward '{reward}'", confidence)
    if any(r["fidelity"] for r in rows):
        fidelity = fidelity_key(keys_declared)
        curves(settings, arm_order, fidelity, folder / "fidelity.png", "Frechet distance to held-out data",
               f"fidelity under reward '{reward}'", confidence)
        pareto(rows, arm_order, references, folder / "pareto.png", f"reward: {reward}", confidence, fidelity)
    write_gallery(folder, settings)
    lines = _lines(folder, manifest, settings, references, rows, judgements, keys_declared)
    path = folder / "report.md"
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())
    return path


def report_lines(folder: Path) -> list[str]:
    """The report's Markdown, computed from the saved metrics alone (no plot is drawn: the images
    it links are :func:`write_report`'s)."""
    manifest, settings, references = load(folder)
    keys_declared = declared(folder, manifest)
    return _lines(folder, manifest, settings, references, final_rows(manifest, settings, keys_declared),
                  _verdicts(manifest, settings, keys_declared), keys_declared)


def _lines(folder: Path, manifest: dict, settings: dict[str, list[dict]], references: dict | None,
           rows: list[dict], judgements: list, keys_declared: Declared) -> list[str]:
    compare = manifest["compare"]
    confidence, budget = compare.get("confidence", 0.95), compare.get("budget", "iterations")
    reward = reward_name(folder, manifest)
    title, *about = _header(manifest, reward, confidence)
    lines = [title, ""] + _units_note(manifest) + summary_lines(judgements, len(compare["seeds"]))
    lines += ["## Final values", "", *about[1:]] + final_table(rows, confidence, keys_declared) + [""]
    if any(r["own"] is None for r in rows) and any(r["own"] for r in rows):
        lines += ["FD to own optimum is n/a for an arm whose objective has no known optimum here "
                  "(no `own_target` in its `[[compare.arms]]` table).", ""]
    lines += ["s/iteration is each run's median over its iterations (robust to outside load on a "
              "shared machine), then the mean over seeds; evaluations are not counted.", ""]
    lines += clipping_note(settings)
    lines += _statistics_section(judgements, budget, confidence)
    lines += ["![reward](reward.png)", ""]
    if any(r["fidelity"] for r in rows):
        lines += ["![fidelity](fidelity.png)", "", "![pareto](pareto.png)", ""]
    lines += ["## Evaluation noise", ""]
    hidden = summarized(keys_declared)
    lines += (noise_table(references, hidden) if references
              else ["(no references.json: the evaluation spread was not measured)"])
    lines += [""] + extra_sections(folder, settings, hidden)  # every metric, the gallery: comparison/gallery.py
    lines += (targets_table(references, hidden) if references else []) + _components_section(folder, manifest)
    lines += ["## Samples", "", "Every run's grid before training (start) and after (final), from the same "
              "noise.", "", *samples_table(rows)]
    return lines
