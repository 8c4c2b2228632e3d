"""One iteration's policy update (docs/concepts.md, "One iteration"): at each trained denoising
step the clipped policy loss plus the regularizer's loss, backward, and an optimizer step after
each window of ``train.denoising_steps_per_update`` trained steps, over ``train.inner_epochs``
passes. Gradient synchronization across ranks, the non-finite checks and the running means of
the logged statistics sit behind named helpers, so that the loop reads like the pseudo-code."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import torch
from torch import Tensor

from ddrl_framework.contexts import StepContext, UpdateContext
from ddrl_framework.distributed.sharding import Layout
from ddrl_framework.errors import UserError
from ddrl_framework.evaluation.evaluator import Evaluator
from ddrl_framework.evaluation.scoring import WeightedReward, weighted_total
from ddrl_framework.kit.fused import with_transitions
from ddrl_framework.kit.policy_gradient import clipped_policy_loss, group_advantages, tilt_log_normalizer
from ddrl_framework.protocols import HasUpdateLoss, Policy, Regularizer, Sampler
from ddrl_framework.roles import POLICY_LOSS_KEY
from ddrl_framework.running.config import TrainConfig
from ddrl_framework.running.nonfinite import NonFiniteGuard
from ddrl_framework.types import DataBatch, Trajectory


def advantages(cfg: TrainConfig, rewards: Sequence[WeightedReward], values: dict[str, Tensor], *,
               log_normalizer: float | None = None, reward_term: Tensor | None = None) -> Tensor:
    """Group advantages of the weighted reward, or (``reward_aggregation = "advantages"``) the
    weighted sum of each reward's own group advantages. ``log_normalizer``: exp-tilt's constant Z;
    ``reward_term``: the regularizer's term per sample (added to the sum, or one more reward of
    weight 1 with its own advantages)."""

    def of(reward_values: Tensor) -> Tensor:
        return group_advantages(reward_values, cfg.group_size, cfg.advantage_normalization, cfg.advantage_clip,
                                cfg.advantage_transform, temperature=cfg.advantage_temperature,
                                log_normalizer=log_normalizer)

    if cfg.reward_aggregation == "sum":
        total = weighted_total(rewards, values)
        return of(total if reward_term is None else total + reward_term)
    summed = sum(reward.weight * of(values[reward.key]) for reward in rewards)
    return summed if reward_term is None else summed + of(reward_term)


def tilt_normalizer(cfg: TrainConfig, evaluator: Evaluator, initial_policy: Policy) -> float | None:
    """exp-tilt's ``Z = T log E exp(r / T)``, fixed for the run (``train.exp_tilt_normalizer``):
    over ``exp_tilt_samples`` samples of the policy before any update (the reference), or over the
    held-out data; None where Z is per group or the transform is another."""
    if cfg.advantage_transform != "exp-tilt" or cfg.exp_tilt_normalizer == "group":
        return None
    if cfg.exp_tilt_normalizer == "data":
        held_out = evaluator.held_out
        if held_out.x0 is None:
            raise UserError("train.exp_tilt_normalizer = \"data\" needs a data source with x0; use "
                            "\"reference\" (the reference's own samples) instead")
        rewards = evaluator.score_pixels(held_out.x0, held_out.prompts)
    else:
        rewards = evaluator.sample_rewards(initial_policy, cfg.exp_tilt_samples, seed=cfg.eval_seed + 2)
    return tilt_log_normalizer(rewards, cfg.advantage_temperature)


@attrs.frozen(kw_only=True)
class Rollout:
    """What an update trains on: this rank's trajectories, their conditions and advantages
    ``[b]``, the iteration's data batch and generator."""

    trajectory: Trajectory
    cond: Any
    advantages: Tensor
    batch: DataBatch
    generator: torch.Generator


class Means:
    """Running means of an update's logged statistics, in the order they first appear."""

    def __init__(self):
        self.sums: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)

    def add(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            self.sums[key] += float(value.detach()) if torch.is_tensor(value) else float(value)
            self.counts[key] += 1

    def keep_first(self, key: str, value: float) -> None:
        """A value recorded once (its first), not averaged."""
        if key not in self.sums:
            self.sums[key] = float(value)

    def result(self) -> dict[str, float]:
        return {key: total / self.counts.get(key, 1) for key, total in self.sums.items()}


class PolicyUpdate:
    """The update of one iteration (see the module docstring). ``optimizer_step()`` clips,
    checks and applies the accumulated gradients and returns their norm (before the clip);
    ``grad_clipped`` is the fraction of the iteration's optimizer steps whose norm exceeded
    ``train.max_grad_norm``. A clipped step follows ``g / |g|``, so a run clipped in most
    iterations converges where ``E[g / |g|] = 0``, not where ``E[g] = 0``."""

    def __init__(self, *, policy: Policy, sampler: Sampler, regularizer: Regularizer,
                 reference: Policy | None, cfg: TrainConfig, trained_steps: Sequence[int], shards: Layout,
                 nonfinite: NonFiniteGuard, optimizer_step: Callable[[], float]):
        self.policy, self.sampler, self.regularizer, self.reference = policy, sampler, regularizer, reference
        self.cfg, self.shards, self.nonfinite, self.optimizer_step = cfg, shards, nonfinite, optimizer_step
        self.per_update = cfg.denoising_steps_per_update or len(trained_steps)
        self.windows = [list(trained_steps[i : i + self.per_update])
                        for i in range(0, len(trained_steps), self.per_update)]

    def __call__(self, rollout: Rollout) -> dict[str, float]:
        means = Means()
        for _ in range(self.cfg.inner_epochs):
            for w, window in enumerate(self.windows):
                for position, k in enumerate(window):
                    first, last = w == 0 and position == 0, position == len(window) - 1
                    stats = self.train_step(rollout, k, first, last)
                    means.add(stats)
                    if first:
                        means.keep_first("ratio_first_step", stats["ratio_mean"])
                norm = self.optimizer_step()
                means.add({"grad_norm": norm, "grad_clipped": float(0 < self.cfg.max_grad_norm < norm)})
        return means.result()

    def train_step(self, rollout: Rollout, k: int, first: bool, last: bool) -> dict[str, Tensor]:
        """Trained step ``k``: its losses, backward (the window's last step also adds the
        once-per-update losses and synchronizes gradients across ranks); returns its statistics."""
        self.shards.sync_gradients_in_next_backward(last)  # before the forward, as DDP needs
        trajectory = rollout.trajectory
        context = with_transitions(self.step_context(rollout, k, first), self.regularizer, rollout.cond)
        loss_policy, stats = clipped_policy_loss(context.transition.log_prob(trajectory.latents[k + 1]),
                                                 trajectory.log_probs[k], rollout.advantages, self.cfg.clip_range)
        regularizer = self.regularizer.loss(context)
        once = self.update_losses(rollout) if last else {}
        for key, value in {POLICY_LOSS_KEY: loss_policy, **regularizer, **once}.items():
            self.nonfinite.check(value, f"{key} at sampler step {k}")
        loss = (loss_policy + sum(regularizer.values())) / self.per_update  # the window's mean
        (loss + sum(once.values()) if once else loss).backward()
        return {POLICY_LOSS_KEY: loss_policy, **regularizer, **once, **stats}

    def step_context(self, rollout: Rollout, k: int, first: bool) -> StepContext:
        """What the regularizer sees at step ``k``: only what it declares it needs (the
        transitions are added once computed)."""
        needs, reference_step = self.regularizer, None
        if needs.needs_reference_transition:
            with torch.no_grad():
                reference_step = self.sampler.transition(self.reference, rollout.trajectory.latents[k], k,
                                                         rollout.cond)
        return StepContext(
            policy=self.policy, step=k, is_first_trained_step=first, trajectory=rollout.trajectory,
            group_size=self.cfg.group_size, transition=None, sampler=self.sampler,
            reference=self.reference if needs.needs_reference else None, reference_transition=reference_step,
            data=rollout.batch if needs.needs_data else None, generator=rollout.generator)

    def update_losses(self, rollout: Rollout) -> dict[str, Tensor]:
        """The regularizer's optional once-per-optimizer-step losses (``update_loss``)."""
        needs = self.regularizer
        if not isinstance(needs, HasUpdateLoss):
            return {}
        return needs.update_loss(UpdateContext(
            policy=self.policy, reference=self.reference if needs.needs_reference else None,
            trajectory=rollout.trajectory, group_size=self.cfg.group_size,
            data=rollout.batch if needs.needs_data else None, generator=rollout.generator))
