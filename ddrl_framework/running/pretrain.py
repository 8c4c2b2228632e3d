"""``ddrl pretrain``: plain diffusion-loss training of the policy on its data source, giving the
reference model that RL fine-tunes. Results are cached by their config, so each is made once."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import attrs
import torch
from tqdm import tqdm

from ddrl_framework.errors import UserError
from ddrl_framework.kit.cache import cache_root, cached, config_hash
from ddrl_framework.kit.seeding import make_generator
from ddrl_framework.registry import Registry
from ddrl_framework.roles import PRETRAINED_OPTION
from ddrl_framework.running.config import Component, Experiment
from ddrl_framework.running.device import resolve_device

PRETRAIN_FORMAT = 1  # bump when the pretraining recipe changes, to invalidate old caches


def pretrain_data(experiment: Experiment) -> Component:
    """The data source the reference is pretrained on: ``[pretrain.data]``, else ``[data]``."""
    return experiment.pretrain.data or experiment.data


def pretrain_key(experiment: Experiment) -> dict:
    """Everything the pretrained weights depend on (the data they saw, whichever table names it)."""
    policy_options = {k: v for k, v in experiment.policy.options.items() if k != PRETRAINED_OPTION}
    data = pretrain_data(experiment)
    return {
        "format": PRETRAIN_FORMAT,
        "policy": {"name": experiment.policy.name, **policy_options},
        "data": {"name": data.name, **data.options},
        "pretrain": attrs.asdict(experiment.pretrain, filter=lambda field, _: field.name != "data"),
    }


def pretrained_name(experiment: Experiment) -> str:
    return f"pretrained/{experiment.policy.name}-{config_hash(pretrain_key(experiment))}"


def pretrained_dir(experiment: Experiment) -> Path:
    """Where ``ddrl pretrain`` writes the experiment's reference (the user's cache)."""
    return cache_root() / pretrained_name(experiment)


def find_pretrained(experiment: Experiment) -> Path | None:
    """The experiment's pretrained reference: in the user's cache, else shipped, else None."""
    return cached(pretrained_name(experiment), marker="pretrain.json")


def pretrains(experiment: Experiment) -> bool:
    """Whether the experiment's reference comes from ``[pretrain]`` (rather than the policy's own
    ``pretrained`` option, or the policy as its plugin builds it)."""
    return experiment.pretrain.optimizer_steps > 0 and experiment.policy.options.get(PRETRAINED_OPTION) is None


def untrained_note(experiment: Experiment) -> str | None:
    """A word when RL would start from the policy exactly as its plugin builds it (no
    ``pretrained`` and no ``[pretrain]`` steps): random weights, for most plugins."""
    if experiment.pretrain.optimizer_steps > 0 or experiment.policy.options.get(PRETRAINED_OPTION) is not None:
        return None
    return (f"[pretrain] optimizer_steps = 0 and [policy] sets no pretrained, so RL starts from the policy "
            f"'{experiment.policy.name}' exactly as its plugin builds it (random weights, unless the plugin "
            "builds them otherwise); set [pretrain] optimizer_steps or [policy] pretrained for a trained reference")


def policy_options(experiment: Experiment) -> dict:
    """The policy's options, with ``pretrained`` pointing at the cached reference when the
    experiment pretrains one. Never pretrains: :func:`pretrain_if_needed` is that explicit step."""
    options = dict(experiment.policy.options)
    if pretrains(experiment):
        found = find_pretrained(experiment)
        if found is None:
            raise UserError(f"the reference of [pretrain] is not in the cache ({pretrained_dir(experiment)}): "
                            "run `ddrl pretrain` with this config first")
        options[PRETRAINED_OPTION] = str(found)
    return options


def pretrain_if_needed(experiment: Experiment, registry: Registry, show_progress: bool = True) -> None:
    """Pretrain the reference into the cache when the experiment pretrains one and it is not there."""
    if pretrains(experiment):
        ensure_pretrained(experiment, registry, show_progress)


def ensure_pretrained(experiment: Experiment, registry: Registry, show_progress: bool = True,
                      fresh: bool = False) -> Path:
    """The reference, found (cache, then shipped) or pretrained into the user's cache; ``fresh``
    pretrains it whatever is found (not over an entry of the user's cache)."""
    target, found = pretrained_dir(experiment), find_pretrained(experiment)
    if found is not None and (not fresh or found == target):
        return found
    if experiment.pretrain.optimizer_steps <= 0:
        raise UserError("[pretrain] optimizer_steps must be > 0 to pretrain a reference model")
    if experiment.policy.options.get(PRETRAINED_OPTION) is not None:
        raise UserError("[policy] pretrained is set: that model is the reference; remove it to "
                        "pretrain one from the [pretrain] section instead")
    policy, losses = _train(experiment, registry, show_progress)
    _save_atomically(policy, target, {"key": pretrain_key(experiment), "final_loss": losses})
    return target


def _train(experiment: Experiment, registry: Registry, show_progress: bool):
    settings = experiment.pretrain
    device = resolve_device(experiment.train.device)
    policy = registry.build("policy", experiment.policy.name, experiment.policy.options,
                            "[policy]").to(device)
    spec = pretrain_data(experiment)
    where = "[data]" if experiment.pretrain.data is None else "[pretrain.data]"
    data = registry.build("data", spec.name, spec.options, where)
    loader = data.loader(settings.batch_size, settings.seed)
    generator = make_generator(device, settings.seed)
    params = list(policy.trainable_parameters())
    optimizer = torch.optim.AdamW(params, lr=settings.learning_rate)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / settings.optimizer_steps)))
    recent: list[float] = []
    bar = tqdm(range(settings.optimizer_steps), desc="pretrain", disable=not show_progress, unit="step")
    for _ in bar:
        batch = next(loader).to(device)
        x0 = policy.encode(batch.x0)
        loss = policy.diffusion_loss(x0, policy.encode_conditions(batch), generator=generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        recent = (recent + [loss.item()])[-100:]
        bar.set_postfix(loss=f"{sum(recent) / len(recent):.4f}")
    return policy, sum(recent) / max(len(recent), 1)


def _save_atomically(policy, target: Path, info: dict) -> None:
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    policy.save_pretrained(tmp)
    (tmp / "pretrain.json").write_text(json.dumps(info, indent=2, default=list))
    target.parent.mkdir(parents=True, exist_ok=True)
    if not (target / "pretrain.json").is_file():  # else another process finished it first
        shutil.rmtree(target, ignore_errors=True)  # an incomplete leftover
        try:
            os.rename(tmp, target)
        except OSError:  # another process renamed its copy in between
            pass
    shutil.rmtree(tmp, ignore_errors=True)
