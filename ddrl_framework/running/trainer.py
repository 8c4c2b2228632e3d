"""The RL loop: rollouts in groups, group advantages, PPO-clipped loss per trained step plus the
regularizer's loss (DESIGN.md sections 2 and 4). Every choice is a plugin or a config field."""

from __future__ import annotations

import gc
import time
from collections import defaultdict
from pathlib import Path

import torch
from tqdm import tqdm

from ddrl_framework.distributed.sharding import full_tensor, layout
from ddrl_framework.distributed.world import (
    average_floats,
    gather,
    init_world,
    main_first,
)
from ddrl_framework.errors import TrainingError, UserError
from ddrl_framework.evaluation.evaluator import repeat_to
from ddrl_framework.evaluation.plots import plot_metrics, save_grid
from ddrl_framework.evaluation.scoring import score_each, weighted_total
from ddrl_framework.kit.chain import sample_in_chunks
from ddrl_framework.kit.policy_gradient import clipped_policy_loss, group_advantages
from ddrl_framework.kit.seeding import make_generator
from ddrl_framework.registry import Registry
from ddrl_framework.running.checkpoint import (
    latest_checkpoint,
    load_training_state,
    save_training_state,
)
from ddrl_framework.running.components import Components, build_components, make_evaluator
from ddrl_framework.running.config import Experiment
from ddrl_framework.running.device import resolve_device
from ddrl_framework.running.metrics_log import MetricsLog
from ddrl_framework.running.nonfinite import NonFinite, NonFiniteGuard, require_finite
from ddrl_framework.running.pretrain import pretrain_if_needed
from ddrl_framework.running.run_dir import check_output_dir, record_config
from ddrl_framework.types import DataBatch, NoiseStream, StepContext, Trajectory, take


def iteration_seed(seed: int, iteration: int) -> int:
    """Rollout randomness depends only on (seed, iteration): a resumed run draws the same noise."""
    return seed * 1_000_003 + iteration


class Trainer:
    def __init__(self, experiment: Experiment, registry: Registry, *, resume: bool = False,
                 show_progress: bool = True):
        self.experiment, self.cfg = experiment, experiment.train
        self.output = Path(experiment.output_dir)
        check_output_dir(self.output, experiment, resume)
        self.device = resolve_device(self.cfg.device)
        self.world = init_world(self.device.type)
        if self.world.distributed and self.device.type == "cuda":
            self.device = torch.device("cuda", self.world.local_rank)
        self.groups = self.world.shard(self.cfg.groups)  # this rank's groups of each batch
        self.show_progress = show_progress and self.world.is_main
        with main_first(self.world):  # rank 0 pretrains into the shared cache first
            pretrain_if_needed(experiment, registry, self.show_progress)
        self.parts: Components = build_components(experiment, registry, self.device, self.show_progress)
        self.trained_denoising_steps = self._trained_steps()
        # the reference is the policy before any update: take it before a checkpoint loads
        self.reference = self.parts.policy.reference() if self.parts.needs_reference else None
        self.shards = self._shard()
        self.nonfinite = NonFiniteGuard(self.world)
        self.optimizer = self.shards.optimizer
        self.params = list(self.parts.policy.trainable_parameters())
        self.loader = self.parts.data.loader(self.cfg.groups, experiment.seed)
        self.evaluator = make_evaluator(self.parts, self.reference, self.cfg, self.device)
        self.log = MetricsLog(self.output / "metrics.jsonl")
        self.eval_log = MetricsLog(self.output / "eval.jsonl")
        self.start = self._restore() if resume else 0
        writes = self.world.is_main  # rank 0 alone writes logs, grids and checkpoints
        if writes:
            record_config(self.output, experiment)  # only once all built and restored: a bad input leaves nothing behind
        self.records = self.log.keep_before(self.start, write=writes)
        self.eval_records = self.eval_log.keep_before(self.start, write=writes)

    # --- set-up ---------------------------------------------------------------------------
    def _trained_steps(self) -> list[int]:
        count = self.parts.sampler.num_steps
        steps = list(self.cfg.trained_denoising_steps) if self.cfg.trained_denoising_steps is not None else list(range(count))
        bad = [k for k in steps if not 0 <= k < count]
        if bad or not steps:
            raise UserError(f"train.trained_denoising_steps {steps}: each must be in 0..{count - 1} "
                            f"(the sampler has {count} steps)")
        try:
            self.parts.sampler.check_trainable(self.parts.policy, steps)
        except ValueError as error:
            raise UserError(f"[sampler]: {error}") from None
        return steps

    def _shard(self):
        """``train.sharding``: replicated weights (DDP) or FSDP2 shards; one process needs neither."""
        def optimizer():
            return torch.optim.AdamW(list(self.parts.policy.trainable_parameters()), lr=self.cfg.learning_rate,
                                     weight_decay=self.cfg.weight_decay)

        return layout(self.cfg.sharding, self.parts.policy, optimizer, self.world)

    def _restore(self) -> int:
        path = latest_checkpoint(self.output / "checkpoints")
        if path is None:
            return 0
        state = load_training_state(self.shards, path)
        if int(state["iteration"]) > self.cfg.iterations:
            raise UserError(f"{path} is at iteration {state['iteration']}, past train.iterations = "
                            f"{self.cfg.iterations}: resume with at least that many iterations")
        self.loader.load_state_dict(state["data"])
        return int(state["iteration"])

    # --- one iteration ----------------------------------------------------------------------
    def _members(self) -> slice:
        """This rank's rollouts among the ``groups x group_size`` of an iteration."""
        size = self.cfg.group_size
        return slice(self.groups.start * size, self.groups.stop * size)

    def _noise(self, generator: torch.Generator):
        """Initial noise and the generator (or pre-drawn step noise) for this rank's rollouts: its
        slice of what one process would draw, so the samples do not depend on the world size."""
        shape = (self.cfg.groups * self.cfg.group_size, *self.parts.policy.sample_shape)
        noise = torch.randn(shape, generator=generator, device=self.device)[self._members()]
        if not self.world.distributed:
            return noise, generator
        steps = [torch.randn(shape, generator=generator, device=self.device)[self._members()]
                 for _ in range(self.parts.sampler.num_steps)]
        return noise, NoiseStream(torch.stack(steps))

    def rollout(self, batch: DataBatch, generator: torch.Generator):
        policy, group_size = self.parts.policy, self.cfg.group_size
        members = batch.repeat_each(group_size)
        cond = policy.encode_conditions(members)
        noise, step_noise = self._noise(generator)
        trajectory = self.parts.sampler.rollout(policy, cond, noise, step_noise)
        with torch.no_grad():
            pixels = policy.decode(trajectory.final)
        metadata = {"labels": members.labels}
        values = score_each(self.parts.rewards, pixels, members.prompts, metadata)
        return trajectory, cond, {k: gather(v, self.world) for k, v in values.items()}  # every rank's

    def update(self, trajectory: Trajectory, cond, advantages, batch: DataBatch, generator):
        """Inner epochs over the trained steps; gradients accumulate over ``denoising_steps_per_update``."""
        parts, cfg = self.parts, self.cfg
        per_update = cfg.denoising_steps_per_update or len(self.trained_denoising_steps)
        sums, counts = defaultdict(float), defaultdict(int)
        for epoch in range(cfg.inner_epochs):
            for i, k in enumerate(self.trained_denoising_steps):
                steps_optimizer = (i + 1) % per_update == 0 or i == len(self.trained_denoising_steps) - 1
                self.shards.sync_gradients_in_next_backward(steps_optimizer)
                step = parts.sampler.transition(parts.policy, trajectory.latents[k], k, cond)
                loss_policy, stats = clipped_policy_loss(
                    step.log_prob(trajectory.latents[k + 1]), trajectory.log_probs[k],
                    advantages, cfg.clip_range)
                reference = None
                if parts.regularizer.needs_reference_transition:
                    with torch.no_grad():
                        reference = parts.sampler.transition(self.reference, trajectory.latents[k], k, cond)
                context = StepContext(
                    policy=parts.policy, step=k, is_first_trained_step=(i == 0), trajectory=trajectory,
                    group_size=cfg.group_size, transition=step,
                    reference=self.reference if parts.regularizer.needs_reference else None,
                    reference_transition=reference,
                    data=batch if parts.regularizer.needs_data else None, generator=generator)
                regularizer_losses = parts.regularizer.loss(context)
                for key, value in {"loss_policy": loss_policy, **regularizer_losses}.items():
                    self.nonfinite.check(value, f"{key} at sampler step {k}")
                loss = loss_policy + sum(regularizer_losses.values())
                (loss / per_update).backward()
                for key, value in {"loss_policy": loss_policy, **regularizer_losses, **stats}.items():
                    sums[key] += float(value.detach()) if torch.is_tensor(value) else float(value)
                    counts[key] += 1
                if epoch == 0 and i == 0:
                    sums["ratio_first_step"] = float(stats["ratio_mean"])
                if steps_optimizer:
                    sums["grad_norm"] += self._optimizer_step()
                    counts["grad_norm"] += 1
        return {k: v / counts.get(k, 1) for k, v in sums.items()}

    def _optimizer_step(self) -> float:
        limit = self.cfg.max_grad_norm if self.cfg.max_grad_norm > 0 else float("inf")
        self.shards.reduce_gradients(self.params)
        norm = full_tensor(torch.nn.utils.clip_grad_norm_(self.params, limit))
        self.nonfinite.check(norm, "the gradient norm")
        self.nonfinite.agree()  # under torchrun every rank skips or stops together
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm)

    def advantages(self, values: dict[str, torch.Tensor]) -> torch.Tensor:
        """Group advantages of the weighted reward, or (``reward_aggregation = "advantages"``) the
        weighted sum of each reward's own group advantages."""
        cfg = self.cfg

        def of(rewards):
            return group_advantages(rewards, cfg.group_size, cfg.advantage_normalization, cfg.advantage_clip,
                                    cfg.advantage_transform, temperature=cfg.advantage_temperature)

        if cfg.reward_aggregation == "sum":
            return of(weighted_total(self.parts.rewards, values))
        return sum(reward.weight * of(values[reward.key]) for reward in self.parts.rewards)

    def _local(self, batch: DataBatch) -> DataBatch:
        """This rank's groups: built-in sources already read only those (``BatchLoader``)."""
        if not self.world.distributed or len(batch) == self.groups.stop - self.groups.start:
            return batch
        return take(batch, self.groups.stop, self.groups.start)

    def iteration(self, index: int) -> dict:
        began = time.perf_counter()
        generator = make_generator(self.device, iteration_seed(self.experiment.seed, index))
        batch = self._local(next(self.loader)).to(self.device)
        trajectory, cond, values = self.rollout(batch, generator)
        rewards = weighted_total(self.parts.rewards, values)
        reward_means = {f"reward_{key}": value.mean().item() for key, value in values.items()}
        try:
            self.nonfinite.check(trajectory.log_probs[self.trained_denoising_steps], "the rollout's log-probs")
            for reward in self.parts.rewards:
                require_finite(values[reward.key], f"reward '{reward.name}'")
            advantages = self.advantages(values)
            require_finite(advantages, "advantages")
            stats = self.update(trajectory, cond, advantages[self._members()], batch, generator)
            stats = {**average_floats(stats, self.world), "skipped_update": 0}
        except NonFinite as error:
            self.optimizer.zero_grad(set_to_none=True)
            self.nonfinite.pending = None
            if self.cfg.on_nonfinite == "stop":
                raise TrainingError(
                    f"iteration {index}: {error.source} is not finite (NaN or inf); stopped before this "
                    f"update, so the weights and every checkpoint are as they were (resume with --resume, "
                    f"or set train.on_nonfinite = \"skip\")") from None
            stats = {"skipped_update": 1, "nonfinite_source": error.source}
        return {"iteration": index, "reward_mean": rewards.mean().item(),
                "reward_std": rewards.std(unbiased=False).item(), **reward_means, **stats,
                "seconds": time.perf_counter() - began}

    # --- the run --------------------------------------------------------------------------
    def run(self) -> Path:
        """Train from ``self.start`` to ``train.iterations``; returns the output folder."""
        cfg = self.cfg
        if self.start == 0 and (self.world.is_main or self.shards.collective_forward):
            self.save_samples("samples_start.png")
        bar = tqdm(total=cfg.iterations, initial=self.start, desc="train", unit="it",
                   disable=not self.show_progress)
        main = self.world.is_main
        forwards = main or self.shards.collective_forward  # under FSDP2 every rank takes part
        for index in range(self.start, cfg.iterations):
            if forwards and self._evaluates_at(index):
                self.evaluate(index)
            record = self.iteration(index)
            if main:
                self.log.append(record)
            self.records.append(record)
            done = index + 1
            if done == cfg.iterations or (cfg.checkpoint_every and done % cfg.checkpoint_every == 0):
                self.save(done)
            bar.update(1)
            bar.set_postfix(reward=f"{record['reward_mean']:.4f}", ratio=f"{record.get('ratio_mean', 1.0):.3f}",
                            skipped=sum(r.get("skipped_update", 0) for r in self.records))
        bar.close()
        if not forwards:
            return self.output
        if not self.eval_records or self.eval_records[-1]["iteration"] != cfg.iterations:
            self.evaluate(cfg.iterations)
        self.save_samples("samples_final.png")
        if not main:
            return self.output
        keys = ["reward_mean", f"loss_{self.parts.regularizer.name}", "grad_norm"]
        plot_metrics(self.records, keys, self.output / "metrics.png", self.output.name)
        return self.output

    def _evaluates_at(self, index: int) -> bool:
        every = self.cfg.eval_every
        return index % every == 0 if every > 0 else index == 0

    def evaluate(self, iteration: int) -> dict:
        """Evaluate the policy after ``iteration`` updates; appends to ``eval.jsonl``."""
        began = time.perf_counter()
        record = {"iteration": iteration, **self.evaluator.evaluate(),
                  "seconds": time.perf_counter() - began}
        if self.world.is_main:
            self.eval_log.append(record)
        self.eval_records.append(record)
        return record

    def save(self, iteration: int) -> None:
        """A checkpoint (every rank writes its part); the data position is the same on every rank."""
        state = {"iteration": iteration, "data": self.loader.state_dict()}
        save_training_state(self.shards, self.output / "checkpoints", iteration, state, self.cfg.keep_checkpoints)

    @torch.no_grad()
    def save_samples(self, name: str) -> None:
        """A grid of samples from fixed noise (the same for every run with this seed)."""
        policy, count = self.parts.policy, self.cfg.grid_samples
        if count <= 0:
            return
        generator = make_generator(self.device, self.experiment.seed + 7_919)
        conditions = repeat_to(self.parts.data.held_out(), count).to(self.device)
        noise = torch.randn((count, *policy.sample_shape), generator=generator, device=self.device)
        _, pixels = sample_in_chunks(self.parts.sampler, policy, conditions, noise, generator,
                                     self.cfg.eval_batch_size)
        if self.world.is_main:
            save_grid(pixels, self.output / name)


def train(experiment: Experiment, registry: Registry, *, resume: bool = False,
          show_progress: bool = True) -> Path:
    trainer = Trainer(experiment, registry, resume=resume, show_progress=show_progress)
    world = trainer.world
    try:
        output = trainer.run()
        if world.distributed:
            torch.distributed.barrier()  # no rank leaves while another still writes
        return output
    finally:
        if world.distributed:
            del trainer  # DDP's reducer and FSDP2's state hold the process group in reference
            gc.collect()  # cycles: free them now, not during interpreter shutdown
            torch.distributed.destroy_process_group()
