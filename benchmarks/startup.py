"""How fast the CLI answers: the wall-clock seconds of `ddrl --help`, `ddrl plugins` and of the
first errors of a config file (a typo in a key, an unknown plugin name, a value out of range),
each as a fresh process, beside `python -c "import torch"` on the same machine; prints a table
with the ratio of each to the torch import (the target: at most 1.5).

    python benchmarks/startup.py [--config CONFIG] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from common import DEFAULT_CONFIG

DDRL = [sys.executable, "-m", "ddrl_framework"]


def commands(config: str) -> dict[str, list[str]]:
    """Each measured command; the config errors exit 2 before any work."""
    train = [*DDRL, "train", config, "--quiet", "--set"]
    return {
        'python -c "import torch"': [sys.executable, "-c", "import torch"],
        "ddrl --help": [*DDRL, "--help"],
        "ddrl plugins": [*DDRL, "plugins"],
        "config error: key typo (train.groupz)": [*train, "train.groupz=3"],
        "config error: train.groups = 0": [*train, "train.groups=0"],
        "config error: unknown regularizer": [*train, "regularizer.name=forward-kl"],
    }


def seconds(command: list[str]) -> float:
    began = time.perf_counter()
    subprocess.run(command, capture_output=True, check=False)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    jobs = commands(args.config)
    times: dict[str, list[float]] = {name: [] for name in jobs}
    for name, command in jobs.items():  # warm the file cache once
        seconds(command)
    for _ in range(args.rounds):  # interleaved, so that drift hits every command alike
        for name, command in jobs.items():
            times[name].append(seconds(command))
    medians = {name: statistics.median(values) for name, values in times.items()}
    torch = medians['python -c "import torch"']
    width = max(len(name) for name in jobs)
    print(f"{'command':<{width}}  {'median s':>8}  {'ratio to torch':>14}")
    for name, value in medians.items():
        print(f"{name:<{width}}  {value:>8.2f}  {value / torch:>14.2f}")


if __name__ == "__main__":
    main()
