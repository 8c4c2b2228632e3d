"""How long the main job (`make run`: `ddrl compare configs/digits-brightness.toml`) takes from an
empty cache, after the install: `ddrl pretrain` of the reference, then the comparison (its runs,
the digits CNN the metrics use, the report), each as a fresh process with a fresh
``DDRL_CACHE_DIR`` and output folder. Prints a table of the phases and the total against the
target of 300 s (issue 12: five minutes on 2 cores).

    python benchmarks/main_job.py [--config CONFIG] [--set KEY=VALUE ...] [--keep FOLDER]

``--keep`` writes the comparison into FOLDER (to publish it: benchmarks/results.py --collect)
instead of a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from common import DEFAULT_CONFIG, timed_command

TARGET_SECONDS = 300.0


def run_seconds(output: Path) -> dict[str, float]:
    """Each run's own training seconds (the sum of its iterations'), by run folder."""
    found = {}
    for metrics in sorted(output.glob("runs/*/metrics.jsonl")):
        lines = [json.loads(line) for line in metrics.read_text().splitlines()]
        found[metrics.parent.name] = sum(line["seconds"] for line in lines)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--keep", type=Path, metavar="FOLDER", help="write the comparison here, and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        output = args.keep.resolve() if args.keep else Path(folder) / "out"
        env = {**os.environ, "DDRL_CACHE_DIR": str(Path(folder) / "cache")}
        sets = [a for s in [f"output_dir={output}", *args.set] for a in ("--set", s)]
        ddrl = [sys.executable, "-m", "ddrl_framework"]
        pretrain = timed_command([*ddrl, "pretrain", args.config, "--quiet", *sets], env)  # ~0 s: shipped
        compare = timed_command([*ddrl, "compare", args.config, *sets], env)
        runs = run_seconds(output)
    total = pretrain + compare
    print(f"config {args.config}, overrides {args.set}, {os.cpu_count()} cores")
    print("| phase | seconds |\n|---|---|")
    print(f"| ddrl pretrain (empty cache) | {pretrain:.0f} |")
    print(f"| ddrl compare (runs, metrics' CNN, evaluations, report) | {compare:.0f} |")
    for name, seconds in runs.items():
        print(f"| - of which {name}: its iterations | {seconds:.0f} |")
    print(f"| total | {total:.0f} |")
    print(f"target {TARGET_SECONDS:.0f} s: {'met' if total <= TARGET_SECONDS else 'missed'} "
          f"({total / TARGET_SECONDS:.2f} of it)")


if __name__ == "__main__":
    main()
