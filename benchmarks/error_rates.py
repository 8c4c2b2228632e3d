"""The verdict rule's error rates, measured by simulation through the project's own code
(``comparison.statistics.paired_interval`` and ``comparison.family.family_verdicts``).

    .venv/bin/python benchmarks/error_rates.py [--trials 2000] [--seeds 3 5 10] [--family 1 5 20]
                                               [--margins 0.5 1 2] [--check]

Each trial is one family of ``m`` primary comparisons, each with ``n`` paired per-seed
differences drawn from ``N(delta, 1)``: everything is in units of the per-seed sd of a difference
(on the digits benchmark, about 5 times one evaluation's sd: FD seed sds of 40-300), so a margin
is given as a multiple of it. Two nulls, each at its least favourable point:

* **false better**: every ``delta = 0``; the rate of families with any "A better" / "B better";
* **false equivalent**: every ``delta = margin``; the rate of families with any "equivalent".

Both must be at most ``alpha`` (0.05) up to Monte-Carlo error; ``--check`` exits 1 otherwise.
Beside them, "uncorrected" is the old rule (``statistics.verdict``: each row alone, "better"
when its 95% interval excludes 0) at the same nulls, and "power" the rate of rows called "better" at ``delta = 2 margin``.
"""

from __future__ import annotations

import argparse
import math
import random
import sys

from ddrl_framework.comparison.family import family_verdicts
from ddrl_framework.comparison.statistics import A_BETTER, B_BETTER, EQUIVALENT, paired_interval, verdict

ALPHA = 0.05
BETTER = (A_BETTER, B_BETTER)


def families(generator: random.Random, trials: int, n: int, m: int, delta: float, margin: float):
    """``trials`` families' verdicts and intervals at a true difference ``delta``."""
    for _ in range(trials):
        intervals = [paired_interval([generator.gauss(delta, 1.0) for _ in range(n)], [0.0] * n)
                     for _ in range(m)]
        verdicts = [v for v, _, _ in family_verdicts([(i, margin, True) for i in intervals], [True] * m, ALPHA)]
        yield verdicts, intervals


def cell(generator: random.Random, trials: int, n: int, m: int, margin: float) -> dict[str, float]:
    null = list(families(generator, trials, n, m, 0.0, margin))
    boundary = list(families(generator, trials, n, m, margin, margin))
    shifted = list(families(generator, trials, n, m, 2 * margin, margin))
    return {
        "false better": sum(any(v in BETTER for v in vs) for vs, _ in null) / trials,
        "uncorrected": sum(any(verdict(i, 0.0, True) in BETTER for i in its) for _, its in null) / trials,
        "false equivalent": sum(any(v == EQUIVALENT for v in vs) for vs, _ in boundary) / trials,
        "power": sum(v in BETTER for vs, _ in shifted for v in vs) / (trials * m),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[3, 5, 10])
    parser.add_argument("--family", type=int, nargs="+", default=[1, 5, 20])
    parser.add_argument("--margins", type=float, nargs="+", default=[1.0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a rate is above alpha + 3 MC SE")
    args = parser.parse_args()
    generator = random.Random(0)
    slack = 3 * math.sqrt(ALPHA * (1 - ALPHA) / args.trials)
    print(f"alpha {ALPHA}, {args.trials} families per cell; rates of families (power: of rows); "
          f"Holm over both tests of every row")
    print("| seeds | family size | margin (sd) | false better | false equivalent | uncorrected (false better) | power at 2 margins |")
    print("|---|---|---|---|---|---|---|")
    worst = 0.0
    for n in args.seeds:
        for m in args.family:
            for margin in args.margins:
                rates = cell(generator, args.trials, n, m, margin)
                worst = max(worst, rates["false better"], rates["false equivalent"])
                print(f"| {n} | {m} | {margin:g} | {rates['false better']:.3f} | {rates['false equivalent']:.3f} | "
                      f"{rates['uncorrected']:.3f} | {rates['power']:.3f} |", flush=True)
    print(f"largest error rate {worst:.3f} (alpha {ALPHA}, Monte-Carlo slack {slack:.3f})")
    if args.check and worst > ALPHA + slack:
        sys.exit(1)


if __name__ == "__main__":
    main()
