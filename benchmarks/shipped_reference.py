"""Reproduce the results the package ships (ddrl_framework/shipped): pretrain the config's reference
with ``ddrl pretrain --fresh`` and train the digits classifier, each in an empty cache, and compare
them, tensor by tensor, with the shipped files. Prints a table: the largest absolute difference
of any weight (0 means bitwise the same), and the time each took. Then evaluates both references
as ``ddrl compare`` measures one (``evaluation_repeats`` evaluations on fresh noise) and prints
each metric's mean and sd: the thread count changes the order of float sums, so a reference
pretrained elsewhere differs in its last bits, and these say whether that matters.

    python benchmarks/shipped_reference.py [--config CONFIG]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import DEFAULT_CONFIG, timed_command
from safetensors.torch import load_file, save_file

from ddrl_framework.comparison.compare import load_compare, measure_references
from ddrl_framework.kit.cache import SHIPPED
from ddrl_framework.registry import load_registry
from ddrl_framework.running.loader import load_experiment
from ddrl_framework.running.pretrain import pretrained_name
from ddrl_plugins.shared.digits_classifier import VERSION, train_classifier

CLASSIFIER = f"digits-classifier-v{VERSION}.safetensors"


def largest_difference(shipped: Path, made: Path) -> tuple[float, int]:
    """The largest |shipped - made| over every tensor of every safetensors file, and the tensor count."""
    worst, count = 0.0, 0
    for file in sorted(shipped.rglob("*.safetensors")) if shipped.is_dir() else [shipped]:
        ours = load_file(made / file.relative_to(shipped) if shipped.is_dir() else made)
        for key, tensor in load_file(file).items():
            worst, count = max(worst, float((tensor.double() - ours[key].double()).abs().max())), count + 1
    return worst, count


KEYS = ("reward_mean", "fd", "recognizable", "class_entropy", "pairwise_distance")


def evaluate(config: str, cache: Path) -> list[dict[str, float]]:
    """The reference found in ``cache`` (else the shipped one), evaluated as ``ddrl compare`` does."""
    os.environ["DDRL_CACHE_DIR"] = str(cache)
    base, compare, _ = load_compare(config)
    return measure_references(base, compare, load_registry())["evaluation_repeats"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    args = parser.parse_args()
    name = pretrained_name(load_experiment(args.config))
    if not (SHIPPED / name / "pretrain.json").is_file():
        sys.exit(f"{args.config}: its reference ({name}) is not shipped in {SHIPPED}")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "DDRL_CACHE_DIR": folder}
        seconds = timed_command([sys.executable, "-m", "ddrl_framework", "pretrain", args.config, "--fresh", "--quiet"], env)
        rows.append((name, seconds, *largest_difference(SHIPPED / name, Path(folder) / name)))
        began = time.perf_counter()
        classifier = train_classifier()
        seconds = time.perf_counter() - began
        remade = Path(folder) / "remade-classifier.safetensors"  # not in the cache: the metrics keep the shipped one
        save_file({k: v.contiguous() for k, v in classifier.state_dict().items()}, remade)
        rows.append((CLASSIFIER, seconds, *largest_difference(SHIPPED / CLASSIFIER, remade)))
        evaluations = {"shipped": evaluate(args.config, Path(folder) / "empty"),
                       "remade": evaluate(args.config, Path(folder))}
    print(f"{args.config}; torch {__import__('torch').__version__}, {os.cpu_count()} cores, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    print("| shipped result | remade in (s) | tensors | largest difference of a weight |\n|---|---|---|---|")
    for what, seconds, worst, count in rows:
        print(f"| {what} | {seconds:.0f} | {count} | {worst:.3g} |")
    keys = [k for k in evaluations["shipped"][0] if k in KEYS]
    print("\n| reference | " + " | ".join(keys) + " |\n|---|" + "---|" * len(keys))
    for name, repeats in evaluations.items():
        cells = [f"{statistics.fmean(r[k] for r in repeats):.4g} ± {statistics.stdev(r[k] for r in repeats):.2g}"
                 for k in keys]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
