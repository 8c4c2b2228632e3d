"""Which denoising steps carry the policy gradient: each trained step's share of it.

    .venv/bin/python benchmarks/step_gradients.py [--config CONFIG] [--arm ARM] [--rollouts 4]
                                                  [--set KEY=VALUE ...]

For a few rollouts of the pretrained reference (the first iteration's state), the clipped policy
loss of each sampler step k alone is backpropagated: ``g_k`` is its gradient on the trainable
weights, ``g = sum_k g_k`` the update's. The table gives each step's std, the norm of ``g_k``
relative to the mean norm, and its share of the update ``<g_k, g> / ||g||^2`` (the shares sum to
1), averaged over rollouts. A near-deterministic step has ``log p`` gradients of order
``1 / sigma_k``: a share far above ``1 / K`` there is noise, not signal.
"""

from __future__ import annotations

import argparse
import tempfile

import torch
from common import DEFAULT_CONFIG

from ddrl_framework.kit.policy_gradient import clipped_policy_loss
from ddrl_framework.kit.seeding import make_generator
from ddrl_framework.registry import load_registry
from ddrl_framework.running.loader import load_experiment
from ddrl_framework.running.trainer import Trainer, iteration_seed
from ddrl_framework.running.update import advantages


def step_gradients(trainer: Trainer, index: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Each step's policy-loss gradient (flattened) for the rollout of iteration ``index``, and the stds."""
    generator = make_generator(trainer.device, iteration_seed(trainer.experiment.seed, index))
    batch = next(trainer.loader).to(trainer.device)
    trajectory, cond, values = trainer.rollout(batch, generator)
    advantage = advantages(trainer.cfg, trainer.parts.rewards, values, log_normalizer=trainer.tilt_z)
    policy, sampler, gradients = trainer.parts.policy, trainer.parts.sampler, []
    for k in range(trajectory.num_steps):
        step = sampler.transition(policy, trajectory.latents[k], k, cond)
        loss, _ = clipped_policy_loss(step.log_prob(trajectory.latents[k + 1]), trajectory.log_probs[k],
                                      advantage, trainer.cfg.clip_range)
        grads = torch.autograd.grad(loss, trainer.params, allow_unused=True)
        gradients.append(torch.cat([(g if g is not None else torch.zeros_like(p)).flatten()
                                    for g, p in zip(grads, trainer.params)]))
    return gradients, trajectory.stds.float().flatten()


def shares(gradients: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Each step's norm relative to the mean norm, and its share ``<g_k, g> / ||g||^2`` of the sum."""
    stacked = torch.stack(gradients).double()
    total = stacked.sum(0)
    norms = stacked.norm(dim=1)
    return norms / norms.mean(), stacked @ total / total.square().sum()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    parser.add_argument("--arm", default="none")
    parser.add_argument("--rollouts", type=int, default=4)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        overrides = ["metrics=[]", "train.grid_samples=0", "train.eval_every=0", f"output_dir={folder}",
                     *args.overrides]
        trainer = Trainer(load_experiment(args.config, overrides, arm=args.arm), load_registry(),
                          show_progress=False)
        trained = trainer.trained_steps
        norm_sum, share_all, share_trained = 0.0, 0.0, torch.zeros(trainer.parts.sampler.num_steps)
        for index in range(args.rollouts):
            gradients, stds = step_gradients(trainer, index)
            norm, share = shares(gradients)
            _, among = shares([gradients[k] for k in trained])
            norm_sum, share_all = norm_sum + norm, share_all + share
            share_trained[trained] += among.float()
    print(f"{args.config} --arm {args.arm}: {len(gradients)} steps, trained {trained}; "
          f"mean over {args.rollouts} rollouts of {trainer.cfg.groups} x {trainer.cfg.group_size}")
    print(f"{'step':>4}{'std':>9}{'|g_k| / mean':>14}{'share, all':>12}{'share, trained':>16}")
    for k in range(len(gradients)):
        among = f"{float(share_trained[k]) / args.rollouts:>16.3f}" if k in trained else f"{'-':>16}"
        print(f"{k:>4}{float(stds[k]):>9.4f}{float(norm_sum[k]) / args.rollouts:>14.2f}"
              f"{float(share_all[k]) / args.rollouts:>12.3f}{among}")


if __name__ == "__main__":
    main()
