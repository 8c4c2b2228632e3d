"""Sampler ``ddim-sde``: DDIM with ``eta > 0`` as a chain of Gaussian transitions (DDPO's form).

Step k goes from timestep ``t = timesteps[k]`` to ``t_prev = t - T // steps`` (diffusers' "trailing"
spacing by default, which starts at ``T - 1``: pure noise; or "leading"). With ``a = alphas_cumprod``
and ``x0_hat``, ``eps_hat`` the forward process's inverse of the network output:

    var   = (1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)        (DDIM eq. 16)
    std   = eta * sqrt(var)
    mean  = sqrt(a_prev) * x0_hat + sqrt(1 - a_prev - std^2) * eps_hat
    x_{k+1} ~ N(mean, std^2 I)

This is diffusers' ``DDIMScheduler.step`` written as a density; ``eta = 0`` is its deterministic step.
The per-step coefficients are computed once per forward process and step count.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, Literal

import attrs
import torch
from torch import Tensor

from ddrl_framework.hookspecs import hookimpl
from ddrl_framework.kit.chain import require_process, rollout_chain, steps_within_gain
from ddrl_framework.kit.forward_process import DdpmProcess, ddim_variance
from ddrl_framework.protocols import Policy, WrapsPipeline
from ddrl_framework.types import Gaussian, Trajectory


@hookimpl
def register_samplers(register):
    register("ddim-sde", DdimSdeSampler, forward_process="ddpm")


@attrs.frozen(kw_only=True)
class DdimCoefficients:
    """Every step's coefficients, ``[K]`` each (float32, on the CPU)."""

    timesteps: Tensor  # t_k, long
    a_t: Tensor
    sqrt_a_prev: Tensor
    direction: Tensor  # sqrt(1 - a_prev - std^2), clamped at 0 against rounding
    std: Tensor


@attrs.frozen(kw_only=True)
class DdimSdeSampler:
    denoising_steps: int = attrs.field(default=10, validator=attrs.validators.ge(1))  # K
    eta: float = attrs.field(default=1.0, validator=attrs.validators.ge(0.0))  # 0: deterministic
    # as DDIMScheduler spaces them; "leading" ends on t = 0, a deterministic (untrainable) step
    timestep_spacing: Literal["trailing", "leading"] = "trailing"
    # clamp x0_hat to [-1, 1]; None: as the backbone's own sampling does (the forward process's
    # clip_sample: on for pixel DDPMs, as DDIMScheduler's default; off for SD's latents)
    clip_sample: bool | None = None
    set_alpha_to_one: bool = False  # last step's a_prev: 1 (no noise) or a_0 (keeps std > 0)
    # added to "leading" timesteps, as DDIMScheduler's steps_offset; None: the forward process's
    # (the backbone's scheduler config: 1 for SD). "trailing" has no offset, as in diffusers
    steps_offset: int | None = attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.ge(0)))

    @property
    def num_steps(self) -> int:
        return self.denoising_steps

    def coefficients(self, policy: Policy) -> DdimCoefficients:
        process = require_process(policy, DdpmProcess, "ddim-sde", instead="flow-sde")
        offset = process.steps_offset if self.steps_offset is None else self.steps_offset
        return _coefficients(process, self.denoising_steps, self.eta, self.timestep_spacing, self.set_alpha_to_one,
                             offset if self.timestep_spacing == "leading" else 0)

    def clips(self, policy: Policy) -> bool:
        """Whether x0_hat is clamped: ``clip_sample``, else the policy's forward process's."""
        return policy.forward_process.clip_sample if self.clip_sample is None else self.clip_sample

    def transition(self, policy: Policy, x_k: Tensor, k: int, cond: Any) -> Gaussian:
        c, device = self.coefficients(policy), x_k.device
        t = c.timesteps[k].to(device)
        output = policy.predict(x_k, t.expand(x_k.shape[0]), cond)
        x0, eps = policy.forward_process.x0_and_eps(output, x_k, c.a_t[k].to(device))
        if self.clips(policy):
            x0 = x0.clamp(-1, 1)
        return self._step(c, k, x0, eps)

    def posterior(self, policy: Policy, x_k: Tensor, k: int, x0: Tensor) -> Gaussian:
        """``q(x_{k+1} | x_k, x0)``: step ``k`` when the prediction is ``x0`` itself (DDIM's
        posterior at this ``eta``; DDPM's at ``eta = 1`` over consecutive timesteps)."""
        c = self.coefficients(policy)
        eps = policy.forward_process.eps_from_x0(x_k, x0, c.a_t[k].to(x_k.device))
        return self._step(c, k, x0, eps)

    @staticmethod
    def _step(c: DdimCoefficients, k: int, x0: Tensor, eps: Tensor) -> Gaussian:
        """``N(sqrt(a_prev) x0 + sqrt(1 - a_prev - std^2) eps, std^2 I)``."""
        device = x0.device
        mean = c.sqrt_a_prev[k].to(device) * x0 + c.direction[k].to(device) * eps
        return Gaussian(mean=mean, std=c.std[k].to(device))

    def default_trained_steps(self, policy: Policy) -> list[int]:
        """The steps whose gradient gain is at most ``GAIN_LIMIT`` times the median (see
        :func:`gradient_gains`): a near-deterministic last step, or a first step whose x0 is
        1 / sqrt(a_t) times its network output, would otherwise carry most of the policy
        gradient, as noise."""
        return steps_within_gain(gradient_gains(self.coefficients(policy), policy.forward_process))

    def check_trainable(self, policy: Policy, steps: Sequence[int]) -> None:
        """A ``ValueError`` naming ``eta`` if any of ``steps`` has std 0 (no density to train)."""
        std = self.coefficients(policy).std
        flat = [k for k in steps if float(std[k]) == 0]
        if flat:
            raise ValueError(f"ddim-sde: sampler step(s) {flat} are deterministic (std 0) at eta = "
                             f"{self.eta}: set eta > 0, or leave those steps out of train.trained_denoising_steps")

    def deterministic(self) -> DdimSdeSampler:
        """This sampler at ``eta = 0``, for checks against :meth:`scheduler_step`."""
        return attrs.evolve(self, eta=0.0)

    def on_pipeline_schedule(self, policy: WrapsPipeline) -> tuple[DdimSdeSampler, Any]:
        """The pipeline run by ``DDIMScheduler`` at eta 0 from its scheduler config (spacing,
        ``steps_offset``, final alpha; a config without ``clip_sample``, DPM-Solver's, does not clip),
        and this sampler at zero noise on that schedule (the pipeline-fidelity check)."""
        from diffusers import DDIMScheduler

        config = policy.pipeline.scheduler.config
        ddim = DDIMScheduler.from_config(config, clip_sample=bool(config.get("clip_sample", False)))
        deterministic = attrs.evolve(self.deterministic(), timestep_spacing=ddim.config.timestep_spacing,
                                     set_alpha_to_one=ddim.config.set_alpha_to_one,
                                     steps_offset=ddim.config.steps_offset)
        return deterministic, ddim

    @torch.no_grad()
    def scheduler_step(self, policy: Policy, x_k: Tensor, k: int, cond: Any) -> Tensor:
        """Step ``k`` of diffusers' ``DDIMScheduler`` at ``eta = 0`` (what zero noise must equal),
        clamping as the *backbone's* sampling does (its forward process's ``clip_sample``), not as
        this sampler is told to: a sampler that clamps where the pipeline does not fails the match."""
        from diffusers import DDIMScheduler

        process = require_process(policy, DdpmProcess, "ddim-sde", instead="flow-sde")
        a = process.alphas_cumprod.double()
        betas = 1 - a / torch.cat([torch.ones(1, dtype=a.dtype), a[:-1]])
        scheduler = DDIMScheduler(
            num_train_timesteps=process.num_train_timesteps, trained_betas=betas.tolist(),
            prediction_type=process.prediction_type, clip_sample=process.clip_sample,
            set_alpha_to_one=self.set_alpha_to_one, timestep_spacing=self.timestep_spacing)
        scheduler.set_timesteps(self.denoising_steps)
        t = scheduler.timesteps[k]
        output = policy.predict(x_k, t.to(x_k.device).expand(x_k.shape[0]), cond)
        return scheduler.step(output, t, x_k, eta=0.0).prev_sample

    @torch.no_grad()
    def rollout(self, policy: Policy, cond: Any, noise: Tensor, generator=None) -> Trajectory:
        return rollout_chain(self, policy, cond, noise, generator, self.coefficients(policy).timesteps)


def timesteps(total: int, steps: int, spacing: str, offset: int = 0) -> Tensor:
    """``[K]`` descending training timesteps, spaced as ``DDIMScheduler.set_timesteps`` does
    (``offset``: its ``steps_offset``, added to "leading" timesteps)."""
    if steps > total:
        raise ValueError(f"denoising_steps={steps} exceeds the {total} training timesteps")
    if spacing == "leading":
        return (torch.arange(steps) * (total // steps)).flip(0) + offset
    trailing = torch.arange(total, 0, -total / steps, dtype=torch.float64).round()
    return trailing.long() - 1


@functools.lru_cache(maxsize=16)
def _coefficients(process: DdpmProcess, steps: int, eta: float, spacing: str,
                  set_alpha_to_one: bool, offset: int = 0) -> DdimCoefficients:
    """Computed once per forward process (hashed by identity) and sampler settings, in float64:
    at the first step ``1 - a_prev - std^2`` is a difference of numbers near 1 that is ~1e-8 on a
    cosine schedule, which float32 rounds to 0 (``direction`` 0 instead of 1.5e-4)."""
    a, total = process.alphas_cumprod.double(), process.num_train_timesteps
    t = timesteps(total, steps, spacing, offset)
    t_prev = t - total // steps
    final = torch.ones((), dtype=a.dtype) if set_alpha_to_one else a[0]
    a_t = a[t]
    a_prev = torch.where(t_prev >= 0, a[t_prev.clamp(min=0)], final)
    variance = ddim_variance(a_t, a_prev)
    std = eta * variance.clamp(min=0).sqrt()
    direction = (1 - a_prev - std.square()).clamp(min=0).sqrt()
    return DdimCoefficients(timesteps=t, a_t=a_t.float(), sqrt_a_prev=a_prev.sqrt().float(),
                            direction=direction.float(), std=std.float())


def gradient_gains(c: DdimCoefficients, process: DdpmProcess) -> Tensor:
    """Each step's ``|d mean / d output| / std`` ``[K]`` (inf where std is 0): how much its
    log-prob gradient is amplified per unit of the network's output, ignoring the x0 clip."""
    dx0, deps = process.output_derivatives(c.a_t)
    return (c.sqrt_a_prev * dx0 + c.direction * deps).abs() / c.std
