"""Framework overhead: one `ddrl train` iteration against a minimal hand-written loop of the same
math (DDIM-SDE rollout with log-probs, brightness reward, group-std advantages, PPO-clipped loss
per step, gradient clipping, AdamW) on the same model and batch, interleaved in one process.

    .venv/bin/python benchmarks/overhead.py [--rounds 10]

Prints the median seconds of each and `ratio` = framework / hand-written (target: <= 1.03).
"""

from __future__ import annotations

import argparse
import copy
import math
import tempfile

import torch
from common import DEFAULT_CONFIG, NO_REGULARIZER, interleaved_medians, make_trainer


def hand_written_iteration(model, alphas, optimizer, steps, trained, groups, group_size, seed):
    """The whole RL iteration in plain torch: nothing from ddrl_framework. ``trained``: the
    denoising steps the policy gradient trains on, the framework's own (the same work)."""
    generator = torch.Generator().manual_seed(seed)
    n, total = groups * group_size, alphas.shape[0]
    timesteps = (torch.arange(total, 0, -total / steps, dtype=torch.float64).round().long() - 1).tolist()

    def step(x, k):
        t = timesteps[k]
        a_t = alphas[t]
        a_prev = alphas[t - total // steps] if t - total // steps >= 0 else alphas[0]
        eps = model(x, torch.full((x.shape[0],), t), class_labels=None).sample
        x0 = ((x - (1 - a_t).sqrt() * eps) / a_t.sqrt()).clamp(-1, 1)
        std = ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)).sqrt()
        mean = a_prev.sqrt() * x0 + (1 - a_prev - std**2).clamp(min=0).sqrt() * eps
        return mean, std

    def log_prob(x, mean, std):
        return (-0.5 * ((x - mean) / std) ** 2 - std.log() - 0.5 * math.log(2 * math.pi)).flatten(1).sum(1)

    latents, log_probs = [torch.randn((n, 1, 8, 8), generator=generator)], []
    with torch.no_grad():
        for k in range(steps):
            mean, std = step(latents[-1], k)
            latents.append(mean + std * torch.randn(mean.shape, generator=generator))
            log_probs.append(log_prob(latents[-1], mean, std))
    rewards = ((latents[-1] + 1) / 2).clamp(0, 1).flatten(1).mean(1).reshape(groups, group_size)
    advantages = ((rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, unbiased=False, keepdim=True) + 1e-4)).clamp(-5, 5).reshape(-1)
    for k in trained:
        mean, std = step(latents[k], k)
        ratio = torch.exp(log_prob(latents[k + 1], mean, std) - log_probs[k])
        loss = torch.maximum(-advantages * ratio, -advantages * ratio.clamp(0.8, 1.2)).mean()
        (loss / len(trained)).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        trainer = make_trainer(args.config, folder, [NO_REGULARIZER])
        cfg, policy = trainer.cfg, trainer.parts.policy
        model = copy.deepcopy(policy.model)
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate)
        alphas = policy.forward_process.alphas_cumprod
        steps, trained = trainer.parts.sampler.num_steps, list(trainer.trained_steps)
        counter = {"framework": 0, "hand-written": 0}

        def framework():
            trainer.iteration(counter["framework"])
            counter["framework"] += 1

        def hand_written():
            hand_written_iteration(model, alphas, optimizer, steps, trained, cfg.groups, cfg.group_size,
                                   counter["hand-written"])
            counter["hand-written"] += 1

        medians = interleaved_medians({"framework": framework, "hand-written": hand_written}, args.rounds)
    print(f"threads {torch.get_num_threads()}, {cfg.groups * cfg.group_size} samples x {steps} steps "
          f"({len(trained)} trained, in both loops: steps {trained}), median of {args.rounds} interleaved rounds")
    print(f"{'loop':<14}{'s/iteration':>12}")
    for name, seconds in medians.items():
        print(f"{name:<14}{seconds:>12.4f}")
    print(f"ratio {medians['framework'] / medians['hand-written']:.3f}")


if __name__ == "__main__":
    main()
