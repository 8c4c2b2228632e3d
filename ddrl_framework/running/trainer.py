"""The RL loop (docs/concepts.md, "One iteration"): rollouts in
groups, group advantages, then the update of ``running.update``. Every choice is a plugin or a
config field."""

from __future__ import annotations

import gc
import time
from pathlib import Path

import torch
from tqdm import tqdm

from ddrl_framework.contexts import RolloutContext
from ddrl_framework.distributed.groups import GroupShare
from ddrl_framework.distributed.sharding import full_tensor, layout
from ddrl_framework.distributed.world import average_floats, gather, init_world, main_first
from ddrl_framework.errors import TrainingError, UserError
from ddrl_framework.evaluation.evaluator import repeat_to
from ddrl_framework.evaluation.plots import plot_metrics, save_grid
from ddrl_framework.evaluation.scoring import score_each, weighted_total
from ddrl_framework.kit.chain import sample_in_chunks
from ddrl_framework.kit.seeding import make_generator
from ddrl_framework.options import key_error
from ddrl_framework.protocols import HasDefaultTrainedSteps, HasRewardTerm
from ddrl_framework.registry import Registry
from ddrl_framework.roles import loss_key
from ddrl_framework.running.checkpoint import latest_checkpoint, load_training_state, save_training_state
from ddrl_framework.running.components import Components, build_components, make_evaluator
from ddrl_framework.running.config import Experiment, to_dict
from ddrl_framework.running.device import resolve_device
from ddrl_framework.running.loggers import RunLoggers, build_loggers
from ddrl_framework.running.metrics_log import MetricsLog
from ddrl_framework.running.nonfinite import NonFinite, NonFiniteGuard, require_finite
from ddrl_framework.running.passes import PassCounter
from ddrl_framework.running.pretrain import pretrain_if_needed
from ddrl_framework.running.run_dir import record_config
from ddrl_framework.running.schedule import learning_rate, set_learning_rate
from ddrl_framework.running.update import PolicyUpdate, Rollout, advantages, tilt_normalizer
from ddrl_framework.running.validation import check_output_folder, check_steps_in_range
from ddrl_framework.types import DataBatch, Trajectory


def iteration_seed(seed: int, iteration: int) -> int:
    """Rollout randomness depends only on (seed, iteration): a resumed run draws the same noise."""
    return seed * 1_000_003 + iteration


class Trainer:
    """Sets a run up from its experiment, then :meth:`run` trains it to ``train.iterations``."""

    def __init__(self, experiment: Experiment, registry: Registry, *, resume: bool = False,
                 show_progress: bool = True):
        self.experiment, self.cfg = experiment, experiment.train
        # where and who: the run folder, the device, this rank's share of each batch
        self.output = Path(experiment.output_dir)
        check_output_folder(experiment, "the experiment", resume)
        self.device = resolve_device(self.cfg.device)
        self.world = init_world(self.device.type)
        if self.world.distributed and self.device.type == "cuda":
            self.device = torch.device("cuda", self.world.local_rank)
        self.share = GroupShare(self.world, self.cfg.groups, self.cfg.group_size)
        self.show_progress = show_progress and self.world.is_main
        # the components, from a reference that rank 0 pretrains into the shared cache first
        with main_first(self.world):
            pretrain_if_needed(experiment, registry, self.show_progress)
        self.parts: Components = build_components(experiment, registry, self.device, self.show_progress)
        self.trained_steps = self._trained_steps()
        # the reference is the policy before any update: take it before a checkpoint loads
        self.reference = self.parts.policy.reference() if self.parts.needs_reference else None
        # the weights across ranks, the optimizer and the update
        self.shards = layout(self.cfg.sharding, self.parts.policy, self._optimizer, self.world)
        self.optimizer, self.params = self.shards.optimizer, list(self.parts.policy.trainable_parameters())
        self.nonfinite = NonFiniteGuard(self.world)
        self.update = PolicyUpdate(
            policy=self.parts.policy, sampler=self.parts.sampler, regularizer=self.parts.regularizer,
            reference=self.reference, cfg=self.cfg, trained_steps=self.trained_steps, shards=self.shards,
            nonfinite=self.nonfinite, optimizer_step=self._optimizer_step)
        # data, evaluation, logs, and where a resumed run stands
        self.loader = self.parts.data.loader(self.cfg.groups, experiment.seed)
        self.evaluator = make_evaluator(self.parts, self.reference, self.cfg, self.device)
        self.log, self.eval_log = MetricsLog(self.output / "metrics.jsonl"), MetricsLog(self.output / "eval.jsonl")
        self.tilt_z = tilt_normalizer(self.cfg, self.evaluator, self.parts.policy)  # before weights load
        self.passes = PassCounter(self.parts.policy, self.reference)  # network passes per iteration
        self.start = self._restore() if resume else 0
        writes = self.world.is_main  # rank 0 alone writes logs, grids and checkpoints
        if writes:
            record_config(self.output, experiment)  # only once all built and restored: a bad input leaves nothing behind
        self.records = self.log.keep_before(self.start, write=writes)
        self.eval_records = self.eval_log.keep_before(self.start, write=writes)
        self.loggers = build_loggers(experiment, registry) if writes else RunLoggers()

    # --- set-up ---------------------------------------------------------------------------
    def _trained_steps(self) -> list[int]:
        """``train.trained_denoising_steps``, by default the sampler's ``default_trained_steps``
        (else all), each stochastic (the sampler says)."""
        sampler, count, chosen = self.parts.sampler, self.parts.sampler.num_steps, self.cfg.trained_denoising_steps
        if chosen is not None:
            steps = list(chosen)
        else:  # a deterministic sampler has no default: check_trainable then names its noise knob
            has_default = isinstance(sampler, HasDefaultTrainedSteps)
            steps = (sampler.default_trained_steps(self.parts.policy) if has_default else []) or list(range(count))
        check_steps_in_range(steps, count, self.experiment.sampler.name, "the experiment")
        try:
            self.parts.sampler.check_trainable(self.parts.policy, steps)
        except ValueError as error:
            raise UserError(key_error("[sampler]", str(error))) from None
        return steps

    def _optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(list(self.parts.policy.trainable_parameters()), lr=self.cfg.learning_rate,
                                 weight_decay=self.cfg.weight_decay)

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
    def iteration(self, index: int) -> dict:
        """Roll out this rank's groups, score them, compute every group's advantages, update."""
        began = time.perf_counter()
        self.passes.take()  # from here on: this iteration's
        rate = learning_rate(self.cfg, index)
        set_learning_rate(self.optimizer, rate)
        generator = make_generator(self.device, iteration_seed(self.experiment.seed, index))
        batch = self.share.local(next(self.loader)).to(self.device)
        trajectory, cond, values = self.rollout(batch, generator)
        rewards = weighted_total(self.parts.rewards, values)
        term = self.reward_term(trajectory, cond)
        try:
            self._require_finite(trajectory, values)
            if term is not None:
                require_finite(term, f"the reward term of regularizer '{self.parts.regularizer.name}'")
            advantage = advantages(self.cfg, self.parts.rewards, values, log_normalizer=self.tilt_z,
                                   reward_term=term)
            require_finite(advantage, "advantages")
            rollout = Rollout(trajectory=trajectory, cond=cond, advantages=advantage[self.share.members],
                              batch=batch, generator=generator)
            stats = {**average_floats(self.update(rollout), self.world), "skipped_update": 0}
        except NonFinite as error:
            stats = self._skip_or_stop(index, error)
        extra = {"learning_rate": rate}
        if term is not None:
            extra[f"reward_term_{self.parts.regularizer.name}"] = term.mean().item()
        if self.tilt_z is not None:
            extra["exp_tilt_z"] = self.tilt_z
        passes = self.passes.take()
        if passes is not None:  # summed over ranks: the iteration's compute, whatever the world size
            extra["network_passes"] = round(average_floats({"passes": passes}, self.world)["passes"] * self.world.size)
        return {"iteration": index, "reward_mean": rewards.mean().item(),
                "reward_std": rewards.std(unbiased=False).item(),
                **{f"reward_{key}": value.mean().item() for key, value in values.items()}, **extra, **stats,
                "seconds": time.perf_counter() - began}

    def reward_term(self, trajectory: Trajectory, cond) -> torch.Tensor | None:
        """The regularizer's optional term of each sample's reward (every rank's), or None."""
        regularizer = self.parts.regularizer
        if not isinstance(regularizer, HasRewardTerm):
            return None
        context = RolloutContext(
            policy=self.parts.policy, reference=self.reference if regularizer.needs_reference else None,
            sampler=self.parts.sampler, trajectory=trajectory, cond=cond, group_size=self.cfg.group_size)
        with torch.no_grad():
            return gather(regularizer.reward_term(context).float(), self.world)

    def rollout(self, batch: DataBatch, generator: torch.Generator):
        """This rank's trajectories and conditions, and every rank's reward values (by reward key)."""
        policy = self.parts.policy
        members = batch.repeat_each(self.cfg.group_size)
        cond = policy.encode_conditions(members)
        noise, step_noise = self.share.noise(policy.sample_shape, self.parts.sampler.num_steps, generator,
                                             self.device)
        trajectory = self.parts.sampler.rollout(policy, cond, noise, step_noise)
        with torch.no_grad():
            pixels = policy.decode(trajectory.final)
        values = score_each(self.parts.rewards, pixels, members.prompts, {"labels": members.labels})
        return trajectory, cond, {key: gather(value, self.world) for key, value in values.items()}

    def _require_finite(self, trajectory: Trajectory, values: dict[str, torch.Tensor]) -> None:
        self.nonfinite.check(trajectory.log_probs[self.trained_steps], "the rollout's log-probs")
        for reward in self.parts.rewards:
            require_finite(values[reward.key], f"reward '{reward.name}'")

    def _optimizer_step(self) -> float:
        """Average (if DDP did not), clip and check the gradients; every rank steps or none does."""
        limit = self.cfg.max_grad_norm if self.cfg.max_grad_norm > 0 else float("inf")
        self.shards.reduce_gradients(self.params)
        norm = full_tensor(torch.nn.utils.clip_grad_norm_(self.params, limit))
        self.nonfinite.check(norm, "the gradient norm")
        self.nonfinite.agree()  # under torchrun every rank skips or stops together
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm)

    def _skip_or_stop(self, index: int, error: NonFinite) -> dict:
        """``train.on_nonfinite``: stop before the update (nothing corrupt saved), or skip it."""
        self.optimizer.zero_grad(set_to_none=True)
        self.nonfinite.reset()
        if self.cfg.on_nonfinite == "stop":
            raise TrainingError(
                f"iteration {index}: {error.source} is not finite (NaN or inf); stopped before this "
                f"update, so the weights and every checkpoint are as they were (resume with --resume, "
                f"or set train.on_nonfinite = \"skip\")") from None
        return {"skipped_update": 1, "nonfinite_source": error.source}

    # --- the run --------------------------------------------------------------------------
    def run(self) -> Path:
        """Train from ``self.start`` to ``train.iterations``; returns the output folder."""
        main = self.world.is_main
        forwards = main or self.shards.collective_forward  # under FSDP2 every rank takes part
        for line in self.loggers.start(self.output, to_dict(self.experiment)):
            print(f"logging: {line}", flush=True)
        try:
            self._train(forwards, main)
        finally:
            self.loggers.close()
        return self.output

    def _train(self, forwards: bool, main: bool) -> None:
        cfg = self.cfg
        if self.start == 0 and forwards:
            self.save_samples("samples_start.png")
        bar = tqdm(total=cfg.iterations, initial=self.start, desc="train", unit="it",
                   disable=not self.show_progress)
        for index in range(self.start, cfg.iterations):
            if forwards and self._evaluates_at(index):
                self.evaluate(index)
            record = self.iteration(index)
            if main:
                self.log.append(record)
                self.loggers.log_metrics(record, index, "train")
            self.records.append(record)
            if index + 1 == cfg.iterations or (cfg.checkpoint_every and (index + 1) % cfg.checkpoint_every == 0):
                self.save(index + 1)
            bar.update(1)
            bar.set_postfix(reward=f"{record['reward_mean']:.4f}", ratio=f"{record.get('ratio_mean', 1.0):.3f}",
                            skipped=sum(r.get("skipped_update", 0) for r in self.records))
        bar.close()
        if forwards:
            self._finish(main)

    def _finish(self, main: bool) -> None:
        """The last evaluation, the final grid and (rank 0) the metric curves."""
        if not self.eval_records or self.eval_records[-1]["iteration"] != self.cfg.iterations:
            self.evaluate(self.cfg.iterations)
        self.save_samples("samples_final.png")
        if main:
            keys = ["reward_mean", loss_key(self.parts.regularizer.name), "grad_norm"]
            plot_metrics(self.records, keys, self.output / "metrics.png", self.output.name)

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
            self.loggers.log_metrics(record, iteration, "eval")
            if self.loggers.loggers and self.evaluator.last_samples is not None:
                self.loggers.log_samples("eval/samples", self.evaluator.last_samples, iteration)
        self.eval_records.append(record)
        return record

    def save(self, iteration: int) -> None:
        """A checkpoint (every rank writes its part); the data position is the same on every rank."""
        state = {"iteration": iteration, "data": self.loader.state_dict(), "exp_tilt_z": self.tilt_z}
        save_training_state(self.shards, self.output / "checkpoints", iteration, state, self.cfg.keep_checkpoints)

    @torch.no_grad()
    def save_samples(self, name: str) -> None:
        """A grid of samples from fixed noise (the same for every run with this seed)."""
        policy, count = self.parts.policy, self.cfg.grid_samples
        if count <= 0:
            return
        generator = make_generator(self.device, self.experiment.seed + 7_919)
        conditions = repeat_to(self.parts.held_out(), count).to(self.device)
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
