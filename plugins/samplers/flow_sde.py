"""Sampler ``flow-sde``: the flow-matching reverse SDE as a chain of Gaussian transitions
(Flow-GRPO, arXiv 2505.05470, eq. 9).

The sigmas are those of diffusers' ``FlowMatchEulerDiscreteScheduler.set_timesteps(steps)`` for the
policy's scheduler config (shift included), ending at 0. With ``v`` the predicted velocity at
``sigma = sigmas[k]``, ``dt = sigmas[k+1] - sigma < 0`` and ``g = noise_level * sqrt(sigma / (1 - sigma))``
(``1 - sigma`` taken at ``sigmas[1]`` on the first step, where ``sigma = 1``):

    mean = x + (g^2 / (2 sigma)) (x + (1 - sigma) v) dt + v dt
    std  = g sqrt(-dt)
    x_{k+1} ~ N(mean, std^2 I)

``noise_level = 0`` is the scheduler's deterministic Euler step ``x + v dt``.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import attrs
import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from torch import Tensor

from ddrl_framework.hookspecs import hookimpl
from ddrl_framework.protocols import Policy
from ddrl_framework.samplers import require_schedule, rollout_chain
from ddrl_framework.types import FlowSchedule, Gaussian, Trajectory


@hookimpl
def register_samplers(register):
    register("flow-sde", FlowSdeSampler)


def inference_sigmas(schedule: FlowSchedule, steps: int) -> Tensor:
    """``[steps + 1]`` float32 sigmas, descending to 0, exactly as the diffusers scheduler sets them."""
    return _sigmas(json.dumps(schedule.scheduler_config, sort_keys=True, default=str), steps).clone()


@functools.lru_cache(maxsize=16)
def _sigmas(config_json: str, steps: int) -> Tensor:
    """Built once per scheduler config and step count: every transition of every rollout reads them."""
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(json.loads(config_json))
    scheduler.set_timesteps(steps)
    return scheduler.sigmas.float()


def _flow_schedule(policy: Policy) -> FlowSchedule:
    return require_schedule(policy, FlowSchedule, "flow-sde", instead="ddim-sde")


@attrs.frozen(kw_only=True)
class FlowSdeSampler:
    steps: int = attrs.field(default=10, validator=attrs.validators.ge(1))  # sampler steps K
    # Flow-GRPO's "a": 0 is the deterministic Euler ODE step (no density, cannot be trained)
    noise_level: float = attrs.field(default=0.7, validator=attrs.validators.ge(0.0))

    @property
    def num_steps(self) -> int:
        return self.steps

    def timesteps(self, schedule: FlowSchedule) -> Tensor:
        """``[K]`` network timesteps ``sigma * T``, as the scheduler passes them."""
        return inference_sigmas(schedule, self.steps)[:-1] * schedule.num_train_timesteps

    def step_sigmas(self, schedule: FlowSchedule, k: int) -> tuple[float, float, float]:
        """``(sigma, sigma_next, g)`` of step ``k``."""
        sigmas = inference_sigmas(schedule, self.steps)
        sigma, sigma_next = float(sigmas[k]), float(sigmas[k + 1])
        one_minus = 1 - (float(sigmas[1]) if sigma == 1 else sigma)
        g = self.noise_level * (sigma / one_minus) ** 0.5 if one_minus > 0 else 0.0
        return sigma, sigma_next, g

    def transition(self, policy: Policy, x_k: Tensor, k: int, cond: Any) -> Gaussian:
        schedule = _flow_schedule(policy)
        sigma, sigma_next, g = self.step_sigmas(schedule, k)
        t = torch.full((x_k.shape[0],), sigma * schedule.num_train_timesteps, device=x_k.device)
        v = policy.predict(x_k, t, cond).float()
        x, dt = x_k.float(), sigma_next - sigma
        drift = (g * g / (2 * sigma)) * (x + (1 - sigma) * v) if g > 0 else torch.zeros_like(x)
        mean = x + drift * dt + v * dt
        std = torch.tensor(g * (-dt) ** 0.5, device=x_k.device, dtype=torch.float32)
        return Gaussian(mean=mean, std=std)

    def deterministic(self) -> FlowSdeSampler:
        """This sampler at zero noise (the ODE), for checks against :meth:`scheduler_step`."""
        return attrs.evolve(self, noise_level=0.0)

    @torch.no_grad()
    def scheduler_step(self, policy: Policy, x_k: Tensor, k: int, cond: Any) -> Tensor:
        """Step ``k`` of diffusers' ``FlowMatchEulerDiscreteScheduler`` (what zero noise must equal)."""
        schedule = _flow_schedule(policy)
        scheduler = FlowMatchEulerDiscreteScheduler.from_config(schedule.scheduler_config)
        scheduler.set_timesteps(self.steps)
        scheduler.set_begin_index(k)
        t = scheduler.timesteps[k]
        output = policy.predict(x_k, t.to(x_k.device).expand(x_k.shape[0]), cond)
        return scheduler.step(output, t, x_k).prev_sample

    @torch.no_grad()
    def rollout(self, policy: Policy, cond: Any, noise: Tensor, generator=None) -> Trajectory:
        return rollout_chain(self, policy, cond, noise, generator, self.timesteps(_flow_schedule(policy)))
