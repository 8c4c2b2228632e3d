"""Sampler ``ddim-sde``: DDIM with ``eta > 0`` as a chain of Gaussian transitions (DDPO's form).

Step k goes from timestep ``t = timesteps[k]`` to ``t_prev = t - T // steps`` (diffusers' "trailing"
spacing by default, which starts at ``T - 1``: pure noise; or "leading"). With ``a = alphas_cumprod``, ``x0_hat`` and ``eps_hat`` from the network output:

    var   = (1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)        (DDIM eq. 16)
    std   = eta * sqrt(var)
    mean  = sqrt(a_prev) * x0_hat + sqrt(1 - a_prev - std^2) * eps_hat
    x_{k+1} ~ N(mean, std^2 I)

This is diffusers' ``DDIMScheduler.step`` written as a density; ``eta = 0`` is its deterministic step.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs
import torch
from diffusers import DDIMScheduler
from torch import Tensor

from ddrl_framework.hookspecs import hookimpl
from ddrl_framework.protocols import Policy
from ddrl_framework.samplers import require_schedule, rollout_chain
from ddrl_framework.types import Gaussian, NoiseSchedule, Trajectory


@hookimpl
def register_samplers(register):
    register("ddim-sde", DdimSdeSampler)


def _predict_x0_eps(schedule: NoiseSchedule, output: Tensor, x_t: Tensor, a_t: Tensor):
    if schedule.prediction_type == "epsilon":
        eps = output
        x0 = (x_t - (1 - a_t).sqrt() * eps) / a_t.sqrt()
    elif schedule.prediction_type == "v_prediction":
        x0 = a_t.sqrt() * x_t - (1 - a_t).sqrt() * output
        eps = a_t.sqrt() * output + (1 - a_t).sqrt() * x_t
    else:  # "sample"
        x0 = output
        eps = (x_t - a_t.sqrt() * x0) / (1 - a_t).sqrt()
    return x0, eps


def _ddpm_schedule(policy: Policy) -> NoiseSchedule:
    return require_schedule(policy, NoiseSchedule, "ddim-sde", instead="flow-sde")


@attrs.frozen(kw_only=True)
class DdimSdeSampler:
    steps: int = attrs.field(default=10, validator=attrs.validators.ge(1))  # sampler steps K
    eta: float = attrs.field(default=1.0, validator=attrs.validators.ge(0.0))  # 0: deterministic
    # as DDIMScheduler spaces them; "leading" ends on t = 0, a deterministic (untrainable) step
    timestep_spacing: Literal["trailing", "leading"] = "trailing"
    clip_sample: bool = True  # clamp x0_hat to [-1, 1], as DDIMScheduler does by default
    set_alpha_to_one: bool = False  # last step's a_prev: 1 (no noise) or a_0 (keeps std > 0)

    @property
    def num_steps(self) -> int:
        return self.steps

    def timesteps(self, schedule: NoiseSchedule) -> Tensor:
        """``[K]`` descending training timesteps, spaced as ``DDIMScheduler.set_timesteps`` does."""
        total = schedule.num_train_timesteps
        if self.steps > total:
            raise ValueError(f"steps={self.steps} exceeds the {total} training timesteps")
        if self.timestep_spacing == "leading":
            return (torch.arange(self.steps) * (total // self.steps)).flip(0)
        trailing = torch.arange(total, 0, -total / self.steps, dtype=torch.float64).round()
        return trailing.long() - 1

    def _alphas(self, schedule: NoiseSchedule, k: int) -> tuple[Tensor, Tensor]:
        a = schedule.alphas_cumprod
        t = int(self.timesteps(schedule)[k])
        t_prev = t - schedule.num_train_timesteps // self.steps
        final = torch.ones((), dtype=a.dtype) if self.set_alpha_to_one else a[0]
        return a[t], (a[t_prev] if t_prev >= 0 else final)

    def step_std(self, schedule: NoiseSchedule, k: int) -> Tensor:
        a_t, a_prev = self._alphas(schedule, k)
        variance = (1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)
        return self.eta * variance.clamp(min=0).sqrt()

    def transition(self, policy: Policy, x_k: Tensor, k: int, cond: Any) -> Gaussian:
        schedule = _ddpm_schedule(policy)
        t = self.timesteps(schedule)[k].to(x_k.device)
        output = policy.predict(x_k, t.expand(x_k.shape[0]), cond)
        a_t, a_prev = (a.to(x_k.device, torch.float32) for a in self._alphas(schedule, k))
        std = self.step_std(schedule, k).to(x_k.device, torch.float32)
        x0, eps = _predict_x0_eps(schedule, output, x_k, a_t)
        if self.clip_sample:
            x0 = x0.clamp(-1, 1)
        direction = (1 - a_prev - std.square()).clamp(min=0).sqrt()  # rounding can dip below 0
        mean = a_prev.sqrt() * x0 + direction * eps
        return Gaussian(mean=mean, std=std)

    def deterministic(self) -> DdimSdeSampler:
        """This sampler at ``eta = 0``, for checks against :meth:`scheduler_step`."""
        return attrs.evolve(self, eta=0.0)

    @torch.no_grad()
    def scheduler_step(self, policy: Policy, x_k: Tensor, k: int, cond: Any) -> Tensor:
        """Step ``k`` of diffusers' ``DDIMScheduler`` at ``eta = 0`` (what zero noise must equal)."""
        schedule = _ddpm_schedule(policy)
        a = schedule.alphas_cumprod.double()
        betas = 1 - a / torch.cat([torch.ones(1, dtype=a.dtype), a[:-1]])
        scheduler = DDIMScheduler(
            num_train_timesteps=schedule.num_train_timesteps, trained_betas=betas.tolist(),
            prediction_type=schedule.prediction_type, clip_sample=self.clip_sample,
            set_alpha_to_one=self.set_alpha_to_one, timestep_spacing=self.timestep_spacing)
        scheduler.set_timesteps(self.steps)
        t = scheduler.timesteps[k]
        output = policy.predict(x_k, t.to(x_k.device).expand(x_k.shape[0]), cond)
        return scheduler.step(output, t, x_k, eta=0.0).prev_sample

    @torch.no_grad()
    def rollout(self, policy: Policy, cond: Any, noise: Tensor, generator=None) -> Trajectory:
        return rollout_chain(self, policy, cond, noise, generator, self.timesteps(_ddpm_schedule(policy)))
