"""Evaluation on fixed noise: the same noise and conditions at every evaluation of every arm.

Each evaluation rolls out ``train.eval_samples`` samples (``train.eval_samples_per_prompt`` of each
held-out prompt in a row), scores them with the experiment's
rewards, and runs every ``[[metrics]]`` plugin on them. Records go to ``eval.jsonl``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import torch

from ddrl_framework.contexts import EvalContext
from ddrl_framework.evaluation.scoring import WeightedReward, score
from ddrl_framework.kit.chain import sample_in_chunks
from ddrl_framework.kit.seeding import make_generator
from ddrl_framework.metric_key import REWARD_KEY
from ddrl_framework.protocols import Metric, Policy, Sampler
from ddrl_framework.types import DataBatch, take


def distinct(batch: DataBatch) -> DataBatch:
    """The first member of each distinct (prompt, label) of ``batch``, in order (without ``x0``)."""
    labels = [None] * len(batch) if batch.labels is None else batch.labels.tolist()
    seen: dict[tuple, int] = {}
    for i, key in enumerate(zip(batch.prompts, labels)):
        seen.setdefault(key, i)
    index = list(seen.values())
    return DataBatch(prompts=tuple(batch.prompts[i] for i in index),
                     labels=None if batch.labels is None else batch.labels[index])


def repeat_to(batch: DataBatch, count: int, per_member: int = 1) -> DataBatch:
    """``count`` conditions (without ``x0``). ``per_member = 1``: the first ``count`` members of
    ``batch`` (each repeated in a row when there are fewer). ``per_member > 1``: the distinct
    conditions of ``batch``, cycled, each ``per_member`` times in a row."""
    conditions = attrs.evolve(batch, x0=None)
    if per_member == 1:
        return take(conditions.repeat_each(-(-count // len(conditions))), count)
    unique = distinct(conditions)
    members = -(-count // per_member)
    cycled = [i % len(unique) for i in range(members)]
    chosen = DataBatch(prompts=tuple(unique.prompts[i] for i in cycled),
                       labels=None if unique.labels is None else unique.labels[cycled])
    return take(chosen.repeat_each(per_member), count)


class Evaluator:
    """Evaluates a policy on ``count`` samples from fixed noise under the held-out conditions.

    ``rewards``: the experiment's weighted rewards; ``metrics``: ``(name, Metric)`` pairs;
    ``reference``: the frozen reference policy for metrics that need it (else None); ``chunk``:
    samples per rollout (0: all at once); ``per_prompt``: samples of each held-out condition.
    """

    def __init__(self, *, policy: Policy, sampler: Sampler, rewards: Sequence[WeightedReward],
                 held_out: DataBatch, metrics: Sequence[tuple[str, Metric]], reference: Policy | None,
                 count: int, seed: int, device: torch.device, chunk: int = 0, per_prompt: int = 1):
        self.policy, self.sampler, self.rewards = policy, sampler, tuple(rewards)
        self.metrics, self.reference = list(metrics), reference
        self.chunk = chunk
        self.count, self.seed, self.device = count, seed, device
        self.held_out = held_out.to(device)
        self.conditions = repeat_to(self.held_out, count, per_prompt).to(device)
        self.last_samples: torch.Tensor | None = None  # the latest evaluate()'s samples, for loggers
        generator = make_generator(device, seed)
        self.noise = torch.randn((count, *policy.sample_shape), generator=generator, device=device)

    def score_pixels(self, pixels: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        """The experiment's weighted reward ``[N]`` of any pixels (e.g. held-out data)."""
        return score(self.rewards, pixels, prompts, {})[0]

    def _reward_record(self, samples: torch.Tensor, prompts: Sequence[str]):
        rewards, means = score(self.rewards, samples, prompts, {})
        record: dict[str, Any] = {REWARD_KEY: rewards.mean().item(),
                                  "reward_std": rewards.std(unbiased=False).item(), **means}
        return rewards, record

    @torch.no_grad()
    def evaluate(self, policy: Policy | None = None, noise_seed: int | None = None) -> dict[str, Any]:
        """Reward statistics and every metric for ``policy`` (default: the trained one).

        ``noise_seed`` replaces the fixed evaluation noise (to measure evaluation spread).
        """
        policy = policy or self.policy
        noise = self.noise
        if noise_seed is not None:
            noise = torch.randn(noise.shape, generator=make_generator(self.device, noise_seed),
                                device=self.device)
        cond = policy.encode_conditions(self.conditions)
        generator = make_generator(self.device, self.seed + 1 if noise_seed is None else noise_seed + 1)
        trajectory, samples = sample_in_chunks(self.sampler, policy, self.conditions, noise,
                                               generator, self.chunk)
        self.last_samples = samples
        rewards, record = self._reward_record(samples, self.conditions.prompts)
        context = EvalContext(
            policy=policy, reference=self.reference, sampler=self.sampler,
            trajectory=trajectory, cond=cond, samples=samples, prompts=self.conditions.prompts,
            rewards=rewards, score=self.score_pixels, held_out=self.held_out)
        return self._run_metrics(context, record)

    @torch.no_grad()
    def sample_rewards(self, policy: Policy, count: int, seed: int) -> torch.Tensor:
        """The weighted reward ``[count]`` of ``count`` samples of ``policy`` from the noise of
        ``seed``, under the held-out conditions (e.g. to estimate a constant of the reference)."""
        conditions = repeat_to(self.held_out, count).to(self.device)
        generator = make_generator(self.device, seed)
        noise = torch.randn((count, *policy.sample_shape), generator=generator, device=self.device)
        _, samples = sample_in_chunks(self.sampler, policy, conditions, noise, generator, self.chunk)
        return self.score_pixels(samples, conditions.prompts)

    @torch.no_grad()
    def evaluate_data(self, weights: torch.Tensor | None, seed: int, *, source: DataBatch | None = None,
                      against: DataBatch | None = None) -> dict[str, Any]:
        """The metrics of ``source`` (default: the held-out data) resampled by ``weights`` [len(source)]
        (``None``: uniformly) to the evaluation's sample size, scored against ``against`` (default:
        the held-out data): the values a policy would get if it reached that reweighting of the
        data exactly. Disjoint ``source`` and ``against`` make the values out of sample. Metrics
        that need the reference (which read trajectories) are skipped."""
        source = self.held_out if source is None else source.to(self.device)
        against = self.held_out if against is None else against.to(self.device)
        n = len(source)
        probabilities = torch.full((n,), 1.0 / n) if weights is None else weights.double().cpu()
        generator = torch.Generator().manual_seed(seed)
        index = torch.multinomial(probabilities, self.count, replacement=True, generator=generator)
        samples = source.x0[index.to(source.x0.device)]
        prompts = tuple(source.prompts[i] for i in index.tolist())
        rewards, record = self._reward_record(samples, prompts)
        context = EvalContext(
            policy=self.policy, reference=None, sampler=self.sampler, trajectory=None,
            cond=None, samples=samples, prompts=prompts, rewards=rewards, score=self.score_pixels,
            held_out=against)
        metrics = [(name, m) for name, m in self.metrics if not m.needs_reference]
        return self._run_metrics(context, record, metrics)

    def _run_metrics(self, context: EvalContext, record: dict[str, Any],
                     metrics: Sequence[tuple[str, Metric]] | None = None) -> dict[str, Any]:
        for name, metric in self.metrics if metrics is None else metrics:
            values = metric(context)
            clash = set(values) & set(record)
            if clash:
                raise ValueError(f"metric '{name}' reports {sorted(clash)}, already reported")
            record.update({k: float(v) for k, v in values.items()})
        return record
