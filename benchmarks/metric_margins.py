"""What the default margins of the digits metrics rest on (plugins/metrics/digits_metrics.py,
docs/comparisons.md "Margins"): how much the FD and the class entropy change when a set of
samples loses one digit class of ten, against the same data's own sampling spread.

Each trial splits the held-out digits in two halves: one is the reference set; from the other,
256 images (the evaluation size) are drawn with replacement, once from all classes and once with
one class left out (each class in turn). Prints the mean and sd of each metric over the trials.

    python benchmarks/metric_margins.py [--trials 50] [--samples 256]
"""

from __future__ import annotations

import argparse
import math
import statistics

import torch

from ddrl_framework.evaluation.frechet import frechet_distance, weighted_moments
from ddrl_plugins.data.sklearn_digits import SklearnDigits
from ddrl_plugins.shared.digits_classifier import digits_classifier


def class_entropy(logits: torch.Tensor) -> float:
    """As the ``diversity`` metric reports it: of the predicted classes, over log 10."""
    fractions = torch.bincount(logits.argmax(1), minlength=10).double() / len(logits)
    kept = fractions[fractions > 0]
    return float(-(kept * kept.log()).sum()) / math.log(10)


def trial(features, logits, labels, lost: int | None, samples: int, generator) -> tuple[float, float]:
    order = torch.randperm(len(features), generator=generator)
    reference, pool = order[: len(order) // 2], order[len(order) // 2:]
    if lost is not None:
        pool = pool[labels[pool] != lost]
    drawn = pool[torch.randint(len(pool), (samples,), generator=generator)]
    fd = frechet_distance(*weighted_moments(features[reference]), *weighted_moments(features[drawn]))
    return fd, class_entropy(logits[drawn])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--samples", type=int, default=256)
    args = parser.parse_args()
    held = SklearnDigits().held_out()
    classifier = digits_classifier()
    with torch.no_grad():
        features = classifier.features(held.x0)
        logits = classifier.head(features)
    generator = torch.Generator().manual_seed(0)
    rows = {"all ten classes": [], "one class of ten left out": []}
    for i in range(args.trials):
        rows["all ten classes"].append(trial(features, logits, held.labels, None, args.samples, generator))
        rows["one class of ten left out"].append(trial(features, logits, held.labels, i % 10, args.samples, generator))
    print(f"{len(held.x0)} held-out digits, {args.trials} trials, {args.samples} samples drawn per trial")
    print("| samples drawn from | FD mean | FD sd | class entropy mean | class entropy sd |\n|---|---|---|---|---|")
    for name, values in rows.items():
        fds, entropies = zip(*values)
        print(f"| {name} | {statistics.fmean(fds):.1f} | {statistics.stdev(fds):.1f} | "
              f"{statistics.fmean(entropies):.3f} | {statistics.stdev(entropies):.3f} |")
    fd_cost = statistics.fmean(v[0] for v in rows["one class of ten left out"]) - statistics.fmean(
        v[0] for v in rows["all ten classes"])
    entropy_cost = statistics.fmean(v[1] for v in rows["all ten classes"]) - statistics.fmean(
        v[1] for v in rows["one class of ten left out"])
    print(f"\nthe cost of one class lost: FD +{fd_cost:.1f}, class entropy -{entropy_cost:.3f} "
          f"(exactly uniform classes: -{1 - math.log(9) / math.log(10):.3f})")


if __name__ == "__main__":
    main()
