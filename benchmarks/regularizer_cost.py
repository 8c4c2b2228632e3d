"""What each regularizer costs: seconds per RL iteration and peak memory, as ratios to `none`,
beside the ratio expected from counting forward and backward passes.

    .venv/bin/python benchmarks/regularizer_cost.py [--iterations 5] [--rounds 3]

Each arm runs in its own process (so its peak resident memory is its own), round-robin over
`--rounds` rounds; the table gives the median seconds per iteration.

Expected cost, in units of one forward pass over the rollout batch B (a backward pass counting
two): the rollout 1 per sampler step, the training pass 3 per trained step; reverse KL adds the
reference's forward pass per trained step, kl-in-reward one per sampler step (after the rollout);
the data regularizer adds a forward and backward pass over the data batch of G groups (3 G / B)
per trained step, or on the first step only. "forward-kl-data" runs its data rows in the trained
step's own network call (fuse = true); "separate" makes a call of its own for them: the
difference is the fixed cost of a network call.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from common import DEFAULT_CONFIG

# each setting replaces the regularizer of CONFIG's base experiment (the betas of
# configs/digits-brightness.toml's arms)
ARMS = {
    "none": 'regularizer={name="none"}',
    "reverse-kl": 'regularizer={name="reverse-kl", beta=0.01}',
    "kl-in-reward": 'regularizer={name="kl-in-reward", beta=0.01}',
    "forward-kl-data": 'regularizer={name="forward-kl-data", beta=0.1}',
    "forward-kl-data separate": 'regularizer={name="forward-kl-data", beta=0.1, fuse=false}',
    "forward-kl-data paper": 'regularizer={name="forward-kl-data", beta=10.0, unit="paper"}',
    "forward-kl-data fresh": 'regularizer={name="forward-kl-data", beta=0.1, noise="fresh"}',
    "forward-kl-data first": 'regularizer={name="forward-kl-data", beta=0.1, every_step=false}',
}


def expected_ratio(arm: str, shape: dict) -> float:
    """The ratio to ``none`` from counting network rows: a rollout forward of ``B`` rows per
    sampler step (cost 1), a training forward and backward of ``B`` rows per trained step (cost 3);
    reverse KL adds a reference forward per trained step, kl-in-reward one per sampler step, the
    data term a forward and backward of ``groups`` rows per trained step (or only the first)."""
    steps, trained, rows = shape["steps"], shape["trained"], shape["groups"] / (shape["groups"] * shape["group_size"])
    base = steps + 3 * trained
    extra = {"none": 0.0, "reverse-kl": trained, "kl-in-reward": steps}.get(arm, 3 * trained * rows)
    if arm.endswith("first"):
        extra = 3 * rows
    return (base + extra) / base


def measure(arm: str, config: str, iterations: int) -> dict:
    from common import make_trainer

    with tempfile.TemporaryDirectory() as folder:
        trainer = make_trainer(config, folder, [ARMS[arm]])
        trainer.iteration(0)
        began = time.perf_counter()
        for i in range(iterations):
            trainer.iteration(i + 1)
        seconds = (time.perf_counter() - began) / iterations
        cfg = trainer.cfg
        shape = {"groups": cfg.groups, "group_size": cfg.group_size, "steps": trainer.parts.sampler.num_steps,
                 "trained": len(trainer.trained_steps)}
    return {"seconds": seconds, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, **shape}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS),
                        help="the arms to measure (none is always measured: the ratios are to it)")
    parser.add_argument("--arm", help=argparse.SUPPRESS)  # one measurement, in a child process
    args = parser.parse_args()
    if args.arm:
        print(json.dumps(measure(args.arm, args.config, args.iterations)))
        return
    arms = ["none", *(arm for arm in args.arms if arm != "none")]
    results: dict[str, list[dict]] = {arm: [] for arm in arms}
    for _ in range(args.rounds):
        for arm in arms:
            out = subprocess.run([sys.executable, __file__, "--arm", arm, "--config", args.config,
                                  "--iterations", str(args.iterations)], capture_output=True, text=True, check=True)
            results[arm].append(json.loads(out.stdout.strip().splitlines()[-1]))
    base_s = statistics.median(r["seconds"] for r in results["none"])
    base_mb = statistics.median(r["peak_mb"] for r in results["none"])
    shape = results["none"][0]
    print(f"{shape['groups']} groups x {shape['group_size']} samples, {shape['steps']} steps "
          f"({shape['trained']} trained); "
          f"median of {args.rounds} rounds of {args.iterations} iterations")
    print(f"{'regularizer':<24}{'s/iter':>8}{'ratio':>8}{'expected':>10}{'peak MB':>9}{'ratio':>7}")
    for arm, rows in results.items():
        seconds = statistics.median(r["seconds"] for r in rows)
        peak = statistics.median(r["peak_mb"] for r in rows)
        expected = expected_ratio(arm, shape)
        print(f"{arm:<24}{seconds:>8.3f}{seconds / base_s:>8.2f}{expected:>10.2f}{peak:>9.0f}{peak / base_mb:>7.2f}")


if __name__ == "__main__":
    main()
