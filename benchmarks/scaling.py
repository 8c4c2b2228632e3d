"""Samples per second of `ddrl train` under torchrun with 1 and 2 ranks on the CPU (gloo), the
same global batch, one thread per rank; prints a table with the ratio.

    python benchmarks/scaling.py [--config CONFIG] [--arm ARM] [--iterations 6] [--ranks 1 2]

Each rank rolls out its share of the groups; rewards are gathered and gradients all-reduced
once per optimizer step. The ratio is (samples/s with N ranks) / (samples/s with 1 rank).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import DEFAULT_ARM, DEFAULT_CONFIG, arm_of

from ddrl_framework.running.loader import load_experiment

ROOT = Path(__file__).resolve().parent.parent


def samples_per_second(config: str, arm: str | None, ranks: int, iterations: int,
                       folder: Path) -> tuple[float, float]:
    """(samples per second, median seconds per iteration) after the first iteration."""
    overrides = [f"output_dir={folder / f'ranks{ranks}'}", f"train.iterations={iterations}",
                 "pretrain.optimizer_steps=0", "train.eval_every=0", "train.eval_samples=8",
                 "train.grid_samples=0", "train.checkpoint_every=0", "train.device=cpu", "metrics=[]"]
    experiment = load_experiment(config, overrides, arm=arm)  # what `ddrl train` below runs
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}",
               "-m", "ddrl_framework", "train", config, "--quiet", *(["--arm", arm] if arm else []),
               *[f"--set={o}" for o in overrides]]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DDRL_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    if result.returncode:
        sys.exit(f"torchrun with {ranks} ranks failed:\n{result.stderr[-3000:]}")
    metrics = Path(experiment.output_dir) / "metrics.jsonl"
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    median = statistics.median(r["seconds"] for r in records[1:])
    return experiment.train.groups * experiment.train.group_size / median, median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    parser.add_argument("--arm", help=f"an arm of CONFIG's [compare] table (default: {DEFAULT_ARM} "
                        "when it has one, else the config as it is)")
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        config = str(Path(args.config).resolve())  # the ranks run in the repository root
        arm = arm_of(config, args.arm)
        rows = [(n, *samples_per_second(config, arm, n, args.iterations, Path(scratch))) for n in args.ranks]
    base = rows[0][1]
    print(f"{'ranks':>5}  {'s/iteration':>11}  {'samples/s':>9}  {'ratio':>5}")
    for ranks, rate, seconds in rows:
        print(f"{ranks:>5}  {seconds:>11.3f}  {rate:>9.1f}  {rate / base:>5.2f}")


if __name__ == "__main__":
    main()
