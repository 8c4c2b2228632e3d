"""The exactly solvable benchmark's table: each arm's distance to its own optimum, per seed, beside
the noise floor (docs/comparisons.md, "The exactly solvable benchmark").

    .venv/bin/python benchmarks/solvable.py [--config configs/solvable-gmm.toml] [--seeds 0 1 2]
                                            [--arms reverse-kl ...] [--set KEY=VALUE ...]
                                            [--raw docs/results/solvable.jsonl] [--table-only]

Every ``[[compare.arms]]`` of the config (or those named) is trained for each seed, exactly as
``ddrl compare`` would (its regularizer, beta and ``set``), in a temporary folder. Each finished
run appends one JSON line to ``--raw`` (its last evaluation, seconds, the fraction of clipped
optimizer steps, the commit), and a run already there is not rerun, so an interrupted benchmark
resumes and ``--table-only`` rebuilds the table from the raw file alone. For the arm's
``own_target`` (a ``distance-to-optimum`` key): the energy distance of the policy's samples to
that optimum, the floor (exact draws of the optimum at the same sample size), their ratio with
its 95% t interval over seeds (1 in expectation at the optimum), and the distance to the
config's ``compare.common_target``. The reference's own distance to the data is printed first.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from ddrl_framework.comparison.statistics import t_quantile
from ddrl_framework.errors import TrainingError
from ddrl_framework.registry import load_registry
from ddrl_framework.running.config import Arm
from ddrl_framework.running.loader import ExperimentFile, load_file
from ddrl_framework.running.trainer import Trainer

DEFAULT_CONFIG = "configs/solvable-gmm.toml"
REFERENCE_TO_DATA = "dist_reference_tilt_reference_to_data"


def commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
    return done.stdout.strip() or "unknown"


def train_one(file: ExperimentFile, arm: Arm, beta: float | None, seed: int) -> dict:
    """One arm x beta x seed: its raw line (the last evaluation record, or what stopped it)."""
    spec = file.run(arm, beta, seed)
    began = time.perf_counter()
    trainer = Trainer(spec.experiment, load_registry(), show_progress=False)
    line = {"arm": arm.name, "beta": beta, "seed": seed, "commit": commit()}
    try:
        trainer.run()
    except TrainingError as error:
        return {**line, "stopped": f"diverged ({str(error).split(';')[0]})",
                "seconds": time.perf_counter() - began}
    clipped = [r["grad_clipped"] for r in trainer.records if "grad_clipped" in r]
    return {**line, "record": trainer.eval_records[-1], "seconds": time.perf_counter() - began,
            "clipped": statistics.fmean(clipped) if clipped else 0.0}


def mean_and_spread(values: list[float]) -> str:
    mean = statistics.fmean(values)
    return f"{mean:.5f} ± {statistics.stdev(values):.5f}" if len(values) > 1 else f"{mean:.5f}"


def interval(values: list[float], digits: int = 1) -> str:
    """``mean [low, high]``: the 95% t interval of the mean over seeds."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:.{digits}f}"
    half = t_quantile(0.975, len(values) - 1) * statistics.stdev(values) / len(values) ** 0.5
    return f"{mean:.{digits}f} [{mean - half:.{digits}f}, {mean + half:.{digits}f}]"


def row(arm: Arm, beta: float | None, lines: list[dict], common: str | None) -> str:
    """One table row from the raw lines of one arm x beta (one per seed)."""
    head = [arm.name, "-" if beta is None else f"{beta:g}", arm.own_target or "-"]
    stopped = [line["stopped"] for line in lines if "stopped" in line]
    if stopped:
        return "| " + " | ".join(head) + f" | {' / '.join(stopped)} ({len(stopped)} of {len(lines)} seeds) |"
    records, own = [line["record"] for line in lines], arm.own_target
    ratios = [r[own] / r[f"{own}_floor"] for r in records] if own else []
    cells = head + [
        " / ".join(f"{r[own]:.5f}" for r in records) if own else "-",
        f"{statistics.fmean(r[f'{own}_floor'] for r in records):.5f}" if own else "-",
        interval(ratios) if own else "-",
        mean_and_spread([r[common] for r in records]) if common else "-",
        mean_and_spread([r["reward_mean"] for r in records]),
        f"{records[0][f'{own}_reward']:.3f}" if own else "-",
        f"{statistics.fmean(line['clipped'] for line in lines):.0%}",
        f"{statistics.fmean(line['seconds'] for line in lines):.0f}",
    ]
    return "| " + " | ".join(cells) + " |"


def run_once(raw: dict[tuple, dict], key: tuple, path: Path | None, train) -> None:
    """``train()``'s raw line for ``key`` unless ``raw`` has it, appended to ``path`` at once (so an
    interrupted benchmark keeps every finished run and resumes after it)."""
    if key in raw:
        return
    raw[key] = train()
    if path is not None:
        with path.open("a") as out:
            out.write(json.dumps(raw[key]) + "\n")


def read_raw(path: Path | None) -> dict[tuple, dict]:
    if path is None or not path.is_file():
        return {}
    lines = [json.loads(text) for text in path.read_text().splitlines() if text.strip()]
    return {(line["arm"], line["beta"], line["seed"]): line for line in lines}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arms", nargs="*", help="the arms to run (default: every [[compare.arms]])")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the MLP is tiny)")
    parser.add_argument("--raw", type=Path, help="a JSONL file of finished runs: read, and appended to")
    parser.add_argument("--table-only", action="store_true", help="print the table of the runs in --raw")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    raw = read_raw(args.raw)
    with tempfile.TemporaryDirectory() as folder:
        file = load_file(args.config, [*args.set, f"output_dir={folder}", 'train.device="cpu"'])
        compare = file.comparison()
        arms = [a for a in compare.arms if not args.arms or a.name in args.arms]
        header = ["arm", "beta", "own optimum", "distance (per seed)", "floor", "ratio [95% CI]",
                  f"to {compare.common_target}", "reward", "optimum's reward", "clipped", "s / run"]
        table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        print(f"{args.config}, seeds {args.seeds}, overrides {args.set}", flush=True)
        for arm in arms:
            for beta in arm.betas or (None,):
                lines = []
                for seed in args.seeds:
                    key = (arm.name, beta, seed)
                    if not args.table_only:
                        run_once(raw, key, args.raw, lambda: train_one(file, arm, beta, seed))
                    if key in raw:
                        lines.append(raw[key])
                if lines:
                    table.append(row(arm, beta, lines, compare.common_target))
                    print(table[-1], flush=True)
                    reference = [l["record"][REFERENCE_TO_DATA] for l in lines if REFERENCE_TO_DATA in l.get("record", {})]
                    if reference:
                        print(f"reference to data (energy distance): {mean_and_spread(reference)}", flush=True)
    print("\n" + "\n".join(table))


if __name__ == "__main__":
    main()
