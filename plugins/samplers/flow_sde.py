"""Sampler ``flow-sde``: the flow-matching reverse SDE as a chain of Gaussian transitions
(Flow-GRPO, arXiv 2505.05470, eq. 9).

The sigmas are the pipeline's: diffusers' ``FlowMatchEulerDiscreteScheduler.set_timesteps`` for the
policy's scheduler config (shift included), with the sigmas and resolution-dependent ``mu`` the
pipeline passes (``FlowMatchingProcess.inference_sigmas``), ending at 0. With ``v`` the predicted velocity at
``sigma = sigmas[k]``, ``dt = sigmas[k+1] - sigma < 0`` and ``g = noise_level * sqrt(sigma / (1 - sigma))``
(``1 - sigma`` taken at ``sigmas[1]`` on the first step, where ``sigma = 1``):

    mean = x + (g^2 / (2 sigma)) (x + (1 - sigma) v) dt + v dt
    std  = g sqrt(-dt)
    x_{k+1} ~ N(mean, std^2 I)

``noise_level = 0`` is the scheduler's deterministic Euler step ``x + v dt``. The per-step
``(sigma, dt, g)`` are computed once per scheduler config, step count and noise level.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import attrs
import torch
from torch import Tensor

from ddrl_framework.hookspecs import hookimpl
from ddrl_framework.kit.chain import require_process, rollout_chain, steps_within_gain
from ddrl_framework.kit.forward_process import FlowMatchingProcess
from ddrl_framework.protocols import Policy, WrapsPipeline
from ddrl_framework.types import Gaussian, Trajectory


@hookimpl
def register_samplers(register):
    register("flow-sde", FlowSdeSampler, forward_process="flow-matching")


@attrs.frozen(kw_only=True)
class FlowStep:
    sigma: float
    dt: float  # sigmas[k + 1] - sigma, negative
    g: float  # the diffusion coefficient; 0: a deterministic Euler step

    @property
    def std(self) -> float:
        return self.g * (-self.dt) ** 0.5


@attrs.frozen(kw_only=True)
class FlowSdeSampler:
    denoising_steps: int = attrs.field(default=10, validator=attrs.validators.ge(1))  # K
    # Flow-GRPO's "a": 0 is the deterministic Euler ODE step (no density, cannot be trained)
    noise_level: float = attrs.field(default=0.7, validator=attrs.validators.ge(0.0))

    @property
    def num_steps(self) -> int:
        return self.denoising_steps

    def _process(self, policy: Policy) -> FlowMatchingProcess:
        return require_process(policy, FlowMatchingProcess, "flow-sde", instead="ddim-sde")

    def steps(self, policy: Policy) -> tuple[FlowStep, ...]:
        return _flow_steps(self._process(policy), self.denoising_steps, self.noise_level)

    def timesteps(self, policy: Policy) -> Tensor:
        """``[K]`` network timesteps ``sigma * T``, as the scheduler passes them."""
        total = self._process(policy).num_train_timesteps
        return self._process(policy).inference_sigmas(self.denoising_steps)[:-1] * total

    def transition(self, policy: Policy, x_k: Tensor, k: int, cond: Any) -> Gaussian:
        step, total = self.steps(policy)[k], self._process(policy).num_train_timesteps
        t = torch.full((x_k.shape[0],), step.sigma * total, device=x_k.device)
        return self._step(step, x_k, policy.predict(x_k, t, cond).float())

    def posterior(self, policy: Policy, x_k: Tensor, k: int, x0: Tensor) -> Gaussian:
        """Step ``k`` with the velocity that predicts ``x0`` exactly, ``v = (x_k - x0) / sigma``:
        the Euler-Maruyama step of the x0-conditioned SDE, **not** the forward posterior
        ``q(x_{k+1} | x_k, x0)`` (it does not keep the forward marginals: 2-7% too wide mid-chain
        at shift 3). The data term built on it is a flow-matching loss weighted by
        ``(dt)^2 / (2 std^2)`` per step, whose minimizer is still the true velocity, but it is
        not the ELBO's step term (``ddim-sde``'s posterior is)."""
        step = self.steps(policy)[k]
        v = self._process(policy).velocity_from_x0(x_k.float(), x0.float(), step.sigma)
        return self._step(step, x_k, v)

    @staticmethod
    def _step(step: FlowStep, x_k: Tensor, v: Tensor) -> Gaussian:
        """``N(x + (g^2 / (2 sigma)) (x + (1 - sigma) v) dt + v dt, g^2 (-dt) I)``."""
        sigma, dt, g = step.sigma, step.dt, step.g
        x = x_k.float()
        drift = (g * g / (2 * sigma)) * (x + (1 - sigma) * v) if g > 0 else torch.zeros_like(x)
        mean = x + drift * dt + v * dt
        return Gaussian(mean=mean, std=torch.tensor(step.std, device=x_k.device, dtype=torch.float32))

    def default_trained_steps(self, policy: Policy) -> list[int]:
        """The steps whose gradient gain ``|d mean / d v| / std = |dt (1 + g^2 (1 - sigma) /
        (2 sigma))| / std`` is at most ``GAIN_LIMIT`` times the median (``kit.chain.steps_within_gain``)."""
        gains = [abs(s.dt * (1 + s.g * s.g * (1 - s.sigma) / (2 * s.sigma))) / s.std if s.std > 0 else float("inf")
                 for s in self.steps(policy)]
        return steps_within_gain(torch.tensor(gains, dtype=torch.float64))

    def check_trainable(self, policy: Policy, steps: Sequence[int]) -> None:
        """A ``ValueError`` naming ``noise_level`` if any of ``steps`` has std 0."""
        flat = [k for k in steps if self.steps(policy)[k].std == 0]
        if flat:
            raise ValueError(f"flow-sde: sampler step(s) {flat} are deterministic (std 0) at noise_level = "
                             f"{self.noise_level}: set noise_level > 0")

    def deterministic(self) -> FlowSdeSampler:
        """This sampler at zero noise (the ODE), for checks against :meth:`scheduler_step`."""
        return attrs.evolve(self, noise_level=0.0)

    def on_pipeline_schedule(self, policy: WrapsPipeline) -> tuple[FlowSdeSampler, Any]:
        """This sampler at zero noise and the pipeline's ``FlowMatchEulerDiscreteScheduler`` (the
        pipeline-fidelity check). A pipeline that solves with another scheduler (Wan 2.1's folders:
        UniPC) is run with Euler at the policy's shift, flow-sde's documented choice, so the check
        holds the rest of the pipeline."""
        from diffusers import FlowMatchEulerDiscreteScheduler

        own = policy.pipeline.scheduler
        if isinstance(own, FlowMatchEulerDiscreteScheduler):
            return self.deterministic(), own
        euler = FlowMatchEulerDiscreteScheduler.from_config(self._process(policy).scheduler_config)
        return self.deterministic(), euler

    @torch.no_grad()
    def scheduler_step(self, policy: Policy, x_k: Tensor, k: int, cond: Any) -> Tensor:
        """Step ``k`` of diffusers' ``FlowMatchEulerDiscreteScheduler``, set as the pipeline sets it
        (what zero noise must equal)."""
        scheduler = self._process(policy).scheduler(self.denoising_steps)
        scheduler.set_begin_index(k)
        t = scheduler.timesteps[k]
        output = policy.predict(x_k, t.to(x_k.device).expand(x_k.shape[0]), cond)
        return scheduler.step(output, t, x_k).prev_sample

    @torch.no_grad()
    def rollout(self, policy: Policy, cond: Any, noise: Tensor, generator=None) -> Trajectory:
        return rollout_chain(self, policy, cond, noise, generator, self.timesteps(policy))


@functools.lru_cache(maxsize=16)
def _flow_steps(process: FlowMatchingProcess, steps: int, noise_level: float) -> tuple[FlowStep, ...]:
    """Computed once per forward process (hashed by identity), step count and noise level."""
    sigmas = [float(s) for s in process.inference_sigmas(steps)]
    out = []
    for k in range(steps):
        sigma, sigma_next = sigmas[k], sigmas[k + 1]
        one_minus = 1 - (sigmas[1] if sigma == 1 else sigma)
        g = noise_level * (sigma / one_minus) ** 0.5 if one_minus > 0 else 0.0
        out.append(FlowStep(sigma=sigma, dt=sigma_next - sigma, g=g))
    return tuple(out)
