"""The linear-Gaussian twin's table: each arm's fixed point under its estimator (closed form, or
the exact maximizer of its expected objective), how far that fixed point is from the objective's
stated optimum, and where RL through the trainer actually lands (docs/comparisons.md, "Fixed
points in closed form").

    .venv/bin/python benchmarks/fixed_points.py [--seeds 0 1 2 3 4] [--raw docs/results/linear-twin.jsonl]
                                                [--table-only] [--set KEY=VALUE ...]

Every ``[[compare.arms]]`` of ``configs/solvable-linear.toml`` is trained per seed; each run
appends one JSON line to ``--raw`` (its learned step means per coordinate, exp-tilt's Z, seconds,
the commit), and a run already there is not rerun. KLs are of final marginals, per coordinate,
in nats; intervals are 95% t intervals over seeds x coordinates.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from ddrl_framework.evaluation.fixed_points import (
    AffineChain, Estimator, data_fixed_point, data_log_normalizer, data_tilt, ddim_twin, expected_reward,
    final_kl_to, fixed_point, marginals, read_affine_chains, reference_tilt)
from ddrl_framework.registry import load_registry
from ddrl_framework.running.loader import load_file
from ddrl_framework.running.trainer import Trainer
from solvable import commit, interval, read_raw, run_once

CONFIG = "configs/solvable-linear.toml"
SOURCE, BETA, TEMPERATURE = (0.0, 0.5142 ** 2), 0.5, 0.5

# arm: (estimator in words, its fixed point (chain, Z) -> AffineChain, its stated optimum (chain) -> (mean, var) or None)
ARMS = {
    "kl-in-reward": ("sampled log ratio in the reward: whole gradient",
                     lambda c, z: fixed_point(c, Estimator(reward_beta=BETA)), lambda c: reference_tilt(c, BETA)),
    "kl-in-reward-whole": ("analytic KL in the reward + per-step loss: whole gradient",
                           lambda c, z: fixed_point(c, Estimator(reward_beta=BETA, reward_kl="analytic",
                                                                 loss_beta=BETA)), lambda c: reference_tilt(c, BETA)),
    "reverse-kl": ("per-step loss at the sampled states: partial gradient",
                   lambda c, z: fixed_point(c, Estimator(loss_beta=BETA)), lambda c: reference_tilt(c, BETA)),
    "forward-kl-data": ("data KL in nats on the data's states", lambda c, z: data_fixed_point(c, BETA), None),
    "ddrl-paper": ("data KL in nats + exp-tilt, the run's Z",
                   lambda c, z: data_fixed_point(c, 1.0, TEMPERATURE, z), lambda c: data_tilt(c, TEMPERATURE)),
}


def train_one(file, arm, seed: int) -> dict:
    beta = arm.betas[0] if arm.betas else None
    began = time.perf_counter()
    trainer = Trainer(file.run(arm, beta, seed).experiment, load_registry(), show_progress=False)
    trainer.run()
    chains = read_affine_chains(trainer.parts.policy, trainer.parts.sampler)
    return {"arm": arm.name, "beta": beta, "seed": seed, "commit": commit(), "z": trainer.tilt_z,
            "seconds": time.perf_counter() - began, "p": [c.p.tolist() for c in chains],
            "q": [c.q.tolist() for c in chains]}


def final(chain, point: AffineChain) -> tuple[float, float]:
    means, variances = marginals(chain, point)
    return float(means[-1]), float(variances[-1])


def row(name: str, lines: list[dict], chain) -> str:
    words, own, stated = ARMS[name]
    z = lines[0]["z"]
    point = own(chain, z)
    learned = [AffineChain(p=p, q=q) for line in lines for p, q in zip(line["p"], line["q"])]
    to_own = [final_kl_to(chain, one, final(chain, point)) for one in learned]
    optimum = stated(chain) if stated else None
    cells = [name, words, interval(to_own, 5),
             f"{final_kl_to(chain, point, optimum):.5f}" if optimum else "-",
             interval([final_kl_to(chain, one, optimum) for one in learned], 5) if optimum else "-",
             interval([expected_reward(chain, one) for one in learned], 4), f"{expected_reward(chain, point):.4f}",
             f"{-((optimum[0] - chain.center) ** 2 + optimum[1]):.4f}" if optimum else "-",
             f"{len(lines)}", f"{statistics.fmean(line['seconds'] for line in lines):.0f}"]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--raw", type=Path, help="a JSONL file of finished runs: read, and appended to")
    parser.add_argument("--table-only", action="store_true", help="print the table of the runs in --raw")
    args = parser.parse_args()
    torch.set_num_threads(1)
    raw = read_raw(args.raw)
    header = ["arm", "estimator", "KL to its fixed point (learned)", "fixed point's KL to the stated optimum",
              "KL to the stated optimum (learned)", "reward (learned, per coordinate)", "fixed point's reward",
              "optimum's reward", "seeds", "s / run"]
    table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    with tempfile.TemporaryDirectory() as folder:
        file = load_file(CONFIG, [*args.set, f"output_dir={folder}"])
        for arm in file.comparison().arms:
            beta = arm.betas[0] if arm.betas else None
            for seed in args.seeds:
                if not args.table_only:
                    run_once(raw, (arm.name, beta, seed), args.raw, lambda: train_one(file, arm, seed))
            lines = [raw[(arm.name, beta, s)] for s in args.seeds if (arm.name, beta, s) in raw]
            if lines:
                experiment = file.run(arm, beta, args.seeds[0]).experiment
                parts = load_registry()
                policy = parts.build("policy", experiment.policy.name, experiment.policy.options, "[policy]")
                sampler = parts.build("sampler", experiment.sampler.name, experiment.sampler.options, "[sampler]")
                chain = ddim_twin(policy, sampler, *SOURCE, center=0.5, scale=1.0, dims=2)
                table.append(row(arm.name, lines, chain))
                print(table[-1], flush=True)
    print("\n" + "\n".join(table))


if __name__ == "__main__":
    main()
