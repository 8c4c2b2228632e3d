"""Throughput of the digits policy: samples per second of rollout, of the RL training pass and
of pretraining, and the share of this machine's measured float32 matmul rate each reaches.

    .venv/bin/python benchmarks/throughput.py [--rounds 5]

FLOPs are counted with torch.utils.flop_counter on one UNet forward pass (a backward pass is
counted as two forward passes). The matmul rate is the median of 1024x1024 float32 products.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
from common import DEFAULT_CONFIG, NO_REGULARIZER, interleaved_medians, make_trainer
from torch.utils.flop_counter import FlopCounterMode

from ddrl_framework.running.update import Rollout


def matmul_rate(size: int = 1024, repeats: int = 20) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - began)
    return 2 * size**3 / statistics.median(times)


def forward_flops(policy, batch: int) -> int:
    x = torch.randn((batch, *policy.sample_shape))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        policy.predict(x, torch.full((batch,), 500), None)
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        trainer = make_trainer(args.config, folder, [NO_REGULARIZER])
        policy, sampler, cfg = trainer.parts.policy, trainer.parts.sampler, trainer.cfg
        batch, steps = cfg.groups * cfg.group_size, sampler.num_steps
        noise = torch.randn((batch, *policy.sample_shape))
        trajectory = sampler.rollout(policy, None, noise, None)
        advantages = torch.randn(batch)
        data = trainer.parts.data.loader(128, 0)
        optimizer = torch.optim.AdamW(policy.trainable_parameters(), lr=1e-6)

        def training_pass():
            trainer.update(Rollout(trajectory=trajectory, cond=None, advantages=advantages,
                                   batch=next(trainer.loader), generator=None))

        def pretraining_step():
            pixels = next(data).x0
            loss = policy.diffusion_loss(policy.encode(pixels), None)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        medians = interleaved_medians({
            "rollout": lambda: sampler.rollout(policy, None, noise, None),
            "training pass": training_pass,
            "pretraining step": pretraining_step,
        }, args.rounds)
        flops = {"rollout": steps * forward_flops(policy, batch),
                 "training pass": 3 * steps * forward_flops(policy, batch),
                 "pretraining step": 3 * forward_flops(policy, 128)}
        samples = {"rollout": batch, "training pass": batch, "pretraining step": 128}
        train_size = trainer.parts.data.num_train
    rate = matmul_rate()
    print(f"threads {torch.get_num_threads()}; float32 matmul rate {rate / 1e9:.1f} GFLOP/s; "
          f"batch {batch} x {steps} steps (pretraining: batch 128)")
    print(f"{'phase':<18}{'seconds':>9}{'samples/s':>11}{'GFLOP/s':>9}{'of matmul':>11}")
    for phase, seconds in medians.items():
        achieved = flops[phase] / seconds
        print(f"{phase:<18}{seconds:>9.3f}{samples[phase] / seconds:>11.0f}{achieved / 1e9:>9.2f}"
              f"{achieved / rate:>10.1%}")
    print(f"pretraining epoch ({train_size} images): {medians['pretraining step'] * train_size / 128:.2f} s")


if __name__ == "__main__":
    main()
