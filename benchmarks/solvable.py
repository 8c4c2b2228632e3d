"""The exactly solvable benchmark's table: each arm's distance to its own optimum, per seed, beside
the noise floor (docs/comparisons.md, "The exactly solvable benchmark").

    .venv/bin/python benchmarks/solvable.py [--config configs/solvable-gmm.toml] [--seeds 0 1 2]
                                            [--arms reverse-kl ...] [--set KEY=VALUE ...]

Every ``[[compare.arms]]`` of the config (or those named) is trained for each seed, exactly as
``ddrl compare`` would (its regularizer, beta and ``set``), in a temporary folder. The last
evaluation gives, for the arm's ``own_target`` (a ``distance-to-optimum`` key): the energy
distance of the policy's samples to that optimum, the floor (exact draws of the optimum at the
same sample size), their ratio (1 in expectation at the optimum), and the distance to the
config's ``compare.common_target``. The reference's own distance to the data is printed first.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from ddrl_framework.errors import TrainingError
from ddrl_framework.registry import load_registry
from ddrl_framework.running.config import Arm
from ddrl_framework.running.loader import ExperimentFile, load_file
from ddrl_framework.running.trainer import Trainer

DEFAULT_CONFIG = "configs/solvable-gmm.toml"
REFERENCE_TO_DATA = "dist_reference_tilt_reference_to_data"


def final_evaluation(file: ExperimentFile, arm: Arm, beta: float | None, seed: int) -> tuple[dict | str, float]:
    """The last evaluation record of one arm x beta x seed (or, for a run that stopped on a
    non-finite value, what stopped it), and its training seconds."""
    spec = file.run(arm, beta, seed)
    began = time.perf_counter()
    trainer = Trainer(spec.experiment, load_registry(), show_progress=False)
    try:
        trainer.run()
    except TrainingError as error:
        return f"diverged ({str(error).split(';')[0]})", time.perf_counter() - began
    return trainer.eval_records[-1], time.perf_counter() - began


def mean_and_spread(values: list[float]) -> str:
    mean = statistics.fmean(values)
    return f"{mean:.5f} ± {statistics.stdev(values):.5f}" if len(values) > 1 else f"{mean:.5f}"


def arm_rows(file: ExperimentFile, arm: Arm, seeds: list[int], common: str | None) -> list[str]:
    """One table row per beta of ``arm``; prints the reference's distance to the data once."""
    rows = []
    for beta in arm.betas or (None,):
        records, seconds = zip(*(final_evaluation(file, arm, beta, seed) for seed in seeds))
        stopped = [r for r in records if isinstance(r, str)]
        if stopped:
            rows.append(f"| {arm.name} | {'-' if beta is None else f'{beta:g}'} | {arm.own_target or '-'} | "
                        f"{' / '.join(stopped)} ({len(stopped)} of {len(seeds)} seeds) |")
            print(rows[-1], flush=True)
            continue
        own = arm.own_target
        distances = [r[own] for r in records] if own else []
        floors = [r[f"{own}_floor"] for r in records] if own else []
        ratio = statistics.fmean(distances) / statistics.fmean(floors) if own else float("nan")
        reference = [r[REFERENCE_TO_DATA] for r in records if REFERENCE_TO_DATA in r]
        if reference:
            print(f"reference to data (energy distance): {mean_and_spread(reference)}")
        cells = [
            arm.name, "-" if beta is None else f"{beta:g}", own or "-",
            " / ".join(f"{d:.5f}" for d in distances) or "-",
            f"{statistics.fmean(floors):.5f}" if own else "-", f"{ratio:.1f}",
            mean_and_spread([r[common] for r in records]) if common else "-",
            mean_and_spread([r["reward_mean"] for r in records]),
            f"{records[0][f'{own}_reward']:.3f}" if own else "-",
            f"{statistics.fmean(seconds):.0f}",
        ]
        rows.append("| " + " | ".join(cells) + " |")
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arms", nargs="*", help="the arms to run (default: every [[compare.arms]])")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the MLP is tiny)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        file = load_file(args.config, [*args.set, f"output_dir={folder}", 'train.device="cpu"'])
        compare = file.comparison()
        arms = [a for a in compare.arms if not args.arms or a.name in args.arms]
        header = ["arm", "beta", "own optimum", "distance (per seed)", "floor", "ratio",
                  f"to {compare.common_target}", "reward", "optimum's reward", "s / run"]
        table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        print(f"{args.config}, seeds {args.seeds}, overrides {args.set}", flush=True)
        for arm in arms:
            table += arm_rows(file, arm, args.seeds, compare.common_target)
    print("\n" + "\n".join(table))


if __name__ == "__main__":
    main()
