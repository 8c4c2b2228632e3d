"""Samples per second of `ddrl train` under torchrun with 1 and 2 ranks on the CPU (gloo), the
same global batch, one thread per rank; prints a table with the ratio.

    python benchmarks/scaling.py [--config CONFIG] [--iterations 6] [--ranks 1 2]

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

ROOT = Path(__file__).resolve().parent.parent


def samples_per_second(config: str, ranks: int, iterations: int, folder: Path) -> tuple[float, float]:
    """(samples per second, median seconds per iteration) after the first iteration."""
    output = folder / f"ranks{ranks}"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}",
               "-m", "ddrl_framework", "train", config, "--quiet", "--set", f"output_dir={output}",
               "--set", f"train.iterations={iterations}", "--set", "pretrain.optimizer_steps=0",
               "--set", "train.eval_every=0", "--set", "train.eval_samples=8", "--set", "train.grid_samples=0",
               "--set", "train.checkpoint_every=0", "--set", "train.device=cpu", "--set", "metrics=[]"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DDRL_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    if result.returncode:
        sys.exit(f"torchrun with {ranks} ranks failed:\n{result.stderr[-3000:]}")
    records = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    batch = json.loads((output / "config.json").read_text())["experiment"]["train"]
    median = statistics.median(r["seconds"] for r in records[1:])
    return batch["groups"] * batch["group_size"] / median, median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/digits-brightness-ddrl.toml")
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        rows = [(n, *samples_per_second(args.config, n, args.iterations, Path(scratch))) for n in args.ranks]
    base = rows[0][1]
    print(f"{'ranks':>5}  {'s/iteration':>11}  {'samples/s':>9}  {'ratio':>5}")
    for ranks, rate, seconds in rows:
        print(f"{ranks:>5}  {seconds:>11.3f}  {rate:>9.1f}  {rate / base:>5.2f}")


if __name__ == "__main__":
    main()
