"""Seconds per RL iteration for each regularizer, and per pretraining step and epoch.

    .venv/bin/python benchmarks/iteration_time.py [CONFIG] [--iterations N] [--repeats R]

Uses CONFIG's model, sampler and batch sizes (default: the digits DDRL config) with freshly
initialized weights (timing does not depend on them). The regularizers are timed interleaved,
R rounds of N iterations each, after one warm-up iteration; the table gives the median
seconds per iteration and its ratio to `none`.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from ddrl_framework.config import read_toml, structure_experiment
from ddrl_framework.registry import load_registry
from ddrl_framework.trainer import Trainer

ARMS = {
    "none": {"name": "none"},
    "reverse-kl": {"name": "reverse-kl", "beta": 0.01},
    "forward-kl-data": {"name": "forward-kl-data", "beta": 0.01},
}


def make_trainer(config: str, arm: str, folder: str) -> Trainer:
    """CONFIG with this arm's regularizer table, random weights, no grids, on the CPU."""
    data = read_toml(config)
    data["regularizer"] = ARMS[arm]
    data["output_dir"] = f"{folder}/{arm}"
    data.setdefault("pretrain", {})["steps"] = 0
    data.setdefault("train", {}).update(grid_samples=0, device="cpu")
    return Trainer(structure_experiment(data, config), load_registry(), show_progress=False)


def time_pretraining(trainer: Trainer, batch_size: int, steps: int) -> float:
    policy, data = trainer.parts.policy, trainer.parts.data
    loader = data.loader(batch_size, 0)
    optimizer = torch.optim.AdamW(policy.trainable_parameters(), lr=1e-3)
    began = time.perf_counter()
    for _ in range(steps):
        batch = next(loader)
        loss = policy.diffusion_loss(batch.x0, policy.encode_conditions(batch))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - began) / steps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config", nargs="?", default="configs/digits-brightness-ddrl.toml")
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        trainers = {arm: make_trainer(args.config, arm, folder) for arm in ARMS}
        times: dict[str, list[float]] = {arm: [] for arm in ARMS}
        for trainer in trainers.values():
            trainer.iteration(0)  # warm-up
        for _ in range(args.repeats):
            for arm, trainer in trainers.items():
                began = time.perf_counter()
                for i in range(args.iterations):
                    trainer.iteration(i + 1)
                times[arm].append((time.perf_counter() - began) / args.iterations)
        experiment = trainers["none"].experiment
        batch = experiment.pretrain.batch_size
        step = time_pretraining(trainers["none"], batch, 30)
        train_size = getattr(trainers["none"].parts.data, "num_train", None)

    samples = experiment.train.groups * experiment.train.group_size
    print(f"threads: {torch.get_num_threads()}  samples/iteration: {samples}  "
          f"sampler steps: {trainers['none'].parts.sampler.num_steps}")
    print(f"{'regularizer':<18}{'s/iteration':>12}{'ratio to none':>15}")
    base = statistics.median(times["none"])
    for arm, values in times.items():
        median = statistics.median(values)
        print(f"{arm:<18}{median:>12.3f}{median / base:>15.2f}")
    print(f"\npretraining: {step:.4f} s/step at batch {batch}", end="")
    if train_size:
        print(f"; {step * train_size / batch:.2f} s/epoch ({train_size} train images)")
    else:
        print()


if __name__ == "__main__":
    main()
