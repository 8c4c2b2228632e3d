"""Forward processes: one object per parametrization owns the noising, the training target, the
inverse (x0 and epsilon from the network output) and the pre-training ("simple") loss.

* :class:`DdpmProcess` (DDPM / variance preserving): ``x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps``,
  the network outputting epsilon, ``v = sqrt(a_t) eps - sqrt(1 - a_t) x0`` or ``x0`` itself.
* :class:`FlowMatchingProcess` (rectified flow): ``x_t = (1 - sigma) x0 + sigma eps``, the network
  outputting the velocity ``eps - x0``.

Samplers read a policy's ``forward_process`` to build their transitions; policies delegate
``add_noise``, ``training_target`` and ``diffusion_loss`` to it (:class:`ForwardProcessDelegation`). Both are hashed by identity
(``eq=False``), so a sampler can cache its per-step coefficients per process.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Literal

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor

Predict = Callable[[Tensor, Tensor, Any], Tensor]  # (x_t, t, cond) -> the network output


def per_sample(values: Tensor, like: Tensor) -> Tensor:
    """``[B]`` values shaped to broadcast against ``like`` ``[B, ...]``."""
    return values.to(like.device, like.dtype).reshape(-1, *([1] * (like.ndim - 1)))


def gaussian_denoiser(a_t: Tensor, mean: float, var: float) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """The exact denoiser of ``N(mean, var)`` data under ``x_t = sqrt(a) x0 + sqrt(1 - a) eps``,
    as ``(slope, shift)`` pairs affine in ``x_t``, for ``x0`` and for ``eps``:
    ``E[x0 | x_t] = m + g (x_t - sqrt(a) m)``, ``g = sqrt(a) v / (a v + 1 - a)``, and
    ``E[eps | x_t] = (x_t - sqrt(a) E[x0 | x_t]) / sqrt(1 - a)``. Shapes follow ``a_t``."""
    a = a_t.double()
    gain = a.sqrt() * var / (a * var + 1 - a)
    x0 = (gain, mean - gain * a.sqrt() * mean)
    eps = ((1 - a.sqrt() * x0[0]) / (1 - a).sqrt(), -a.sqrt() * x0[1] / (1 - a).sqrt())
    return x0, eps


class _SimpleLoss:
    """The pre-training loss both parametrizations share (DDPM's "simple" loss; flow matching
    with weighting "none"): ``mean((predict(x_t, t) - target)^2)`` at ``x_t = add_noise(x0, eps, t)``."""

    def diffusion_loss(self, predict: Predict, x0: Tensor, cond: Any, *, noise: Tensor | None = None,
                       t: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """A scalar; ``noise`` defaults to fresh Gaussian noise and ``t`` to the pre-training
        timestep distribution (:meth:`random_timesteps`)."""
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        if t is None:
            t = self.random_timesteps(x0.shape[0], generator, x0.device)
        t = t.to(x0.device).expand(x0.shape[0])
        prediction = predict(self.add_noise(x0, noise, t), t, cond)
        return F.mse_loss(prediction.float(), self.training_target(x0, noise, t).float())


class ForwardProcessDelegation:
    """A policy's ``add_noise``, ``training_target`` and ``diffusion_loss``, handed to its
    ``forward_process`` (the loss on the policy's own ``predict``). Mix into a policy that sets
    ``self.forward_process`` and defines ``predict``."""

    __slots__ = ()

    def add_noise(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        return self.forward_process.add_noise(x0, noise, t)

    def training_target(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        return self.forward_process.training_target(x0, noise, t)

    def diffusion_loss(self, x0: Tensor, cond: Any, *, noise: Tensor | None = None, t: Tensor | None = None,
                       generator: torch.Generator | None = None) -> Tensor:
        """The forward process's pre-training loss on ``predict``: the mean squared error to
        ``training_target`` at ``noise`` and ``t`` (fresh noise, pre-training timesteps by default)."""
        return self.forward_process.diffusion_loss(self.predict, x0, cond, noise=noise, t=t,
                                                   generator=generator)


@attrs.frozen(kw_only=True, eq=False)
class DdpmProcess(_SimpleLoss):
    """``x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps`` with ``a_t = alphas_cumprod[t]``, ``t`` an integer
    in ``0..T-1``. ``prediction_type``: what the network outputs (as diffusers names it)."""

    alphas_cumprod: Tensor  # [T]
    prediction_type: Literal["epsilon", "v_prediction", "sample"] = "epsilon"
    # whether the backbone's own sampling clamps the predicted x0 to [-1, 1] (diffusers' DDIM
    # default; SD's pipelines turn it off for latents): what ddim-sde does unless told otherwise
    clip_sample: bool = True
    # added to "leading" timesteps by the backbone's scheduler (SD's configs: 1, so t = 751..1 at
    # 4 steps, not 750..0): what ddim-sde adds unless told otherwise
    steps_offset: int = 0
    kind = "ddpm"  # what policies and samplers declare when they register (``forward_process=``)

    @property
    def num_train_timesteps(self) -> int:
        return int(self.alphas_cumprod.shape[0])

    def alpha(self, t: Tensor, like: Tensor) -> Tensor:
        """``a_t`` per sample, broadcastable to ``like`` ``[B, ...]``."""
        return per_sample(self.alphas_cumprod.to(like.device)[t.long()], like)

    def add_noise(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        a = self.alpha(t, x0)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def training_target(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        if self.prediction_type == "epsilon":
            return noise
        if self.prediction_type == "v_prediction":
            a = self.alpha(t, x0)
            return a.sqrt() * noise - (1 - a).sqrt() * x0
        return x0

    def x0_and_eps(self, output: Tensor, x_t: Tensor, a_t: Tensor) -> tuple[Tensor, Tensor]:
        """The inverse: ``(x0, eps)`` implied by the network ``output`` at ``x_t``, given ``a_t``
        (broadcastable to ``x_t``)."""
        if self.prediction_type == "epsilon":
            eps = output
            x0 = (x_t - (1 - a_t).sqrt() * eps) / a_t.sqrt()
        elif self.prediction_type == "v_prediction":
            x0 = a_t.sqrt() * x_t - (1 - a_t).sqrt() * output
            eps = a_t.sqrt() * output + (1 - a_t).sqrt() * x_t
        else:  # "sample"
            x0 = output
            eps = (x_t - a_t.sqrt() * x0) / (1 - a_t).sqrt()
        return x0, eps

    def output_derivatives(self, a_t: Tensor) -> tuple[Tensor, Tensor]:
        """``(d x0 / d output, d eps / d output)`` of :meth:`x0_and_eps` (both are linear in the output)."""
        if self.prediction_type == "epsilon":
            return -(1 - a_t).sqrt() / a_t.sqrt(), torch.ones_like(a_t)
        if self.prediction_type == "v_prediction":
            return -(1 - a_t).sqrt(), a_t.sqrt()
        return torch.ones_like(a_t), -a_t.sqrt() / (1 - a_t).sqrt()

    def eps_from_x0(self, x_t: Tensor, x0: Tensor, a_t: Tensor) -> Tensor:
        """The noise that ``x_t`` holds if it came from ``x0``: ``(x_t - sqrt(a_t) x0) / sqrt(1 - a_t)``."""
        return (x_t - a_t.sqrt() * x0) / (1 - a_t).sqrt()

    def random_timesteps(self, n: int, generator: torch.Generator | None, device) -> Tensor:
        """``n`` timesteps drawn uniformly, as DDPM pre-training draws them."""
        return torch.randint(0, self.num_train_timesteps, (n,), generator=generator, device=device)


def ddim_variance(a_t: Tensor, a_prev: Tensor) -> Tensor:
    """The variance of DDIM's step from ``a_t`` to ``a_prev`` at eta = 1 (DDIM eq. 16):
    ``(1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)``, DDPM's posterior variance over that jump."""
    return (1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)


@attrs.frozen(kw_only=True, eq=False)
class FlowMatchingProcess(_SimpleLoss):
    """``x_t = (1 - sigma) x0 + sigma eps``; the network predicts the velocity ``eps - x0``.

    ``sigmas``: ``[T]`` the training sigmas, descending from 1, with the shift applied (the
    resolution-dependent shift ``mu`` too, where the scheduler uses one);
    ``scheduler_config``: diffusers' ``FlowMatchEulerDiscreteScheduler`` config the pipeline samples with;
    ``mu``: the shift the pipeline computes from the image's token count, for a scheduler with
    ``use_dynamic_shifting`` (FLUX, Qwen-Image), else None;
    ``step_mu``: where the pipeline's shift also depends on the step count N (FLUX.2's
    ``compute_empirical_mu(tokens, N)``), the mu for N inference steps, which :meth:`scheduler`
    and :meth:`inference_sigmas` use; ``mu`` is then the one shift the training sigmas were given
    (the builder says which step count it stands for);
    ``pipeline_sigmas``: True where the pipeline passes its own ``linspace(1, 1/N, N)`` sigmas to
    ``set_timesteps`` (FLUX, Qwen-Image) instead of the scheduler's default.
    Samplers take their schedule from :meth:`inference_sigmas`, so it is the pipeline's.
    Timesteps are ``sigma * T`` (floats), as the scheduler passes them to the network.
    """

    sigmas: Tensor
    scheduler_config: dict = attrs.field(factory=dict)
    mu: float | None = None
    pipeline_sigmas: bool = False
    step_mu: Callable[[int], float] | None = None
    prediction_type = "flow"
    kind = "flow-matching"  # what policies and samplers declare when they register (``forward_process=``)

    @property
    def num_train_timesteps(self) -> int:
        return int(self.sigmas.shape[0])

    def sigma(self, t: Tensor, like: Tensor) -> Tensor:
        return per_sample(t.float() / self.num_train_timesteps, like)

    def add_noise(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        sigma = self.sigma(t, x0)
        return (1 - sigma) * x0 + sigma * noise

    def training_target(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        return noise - x0

    def x0_and_eps(self, output: Tensor, x_t: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
        """The inverse: ``(x0, eps) = (x_t - sigma v, x_t + (1 - sigma) v)`` for the velocity
        ``v = output`` at ``x_t``, given ``sigma`` (broadcastable to ``x_t``)."""
        return x_t - sigma * output, x_t + (1 - sigma) * output

    def velocity_from_x0(self, x_t: Tensor, x0: Tensor, sigma: float | Tensor) -> Tensor:
        """The velocity ``eps - x0`` that ``x_t`` implies if it came from ``x0``: ``(x_t - x0) / sigma``."""
        return (x_t - x0) / sigma

    def random_timesteps(self, n: int, generator: torch.Generator | None, device) -> Tensor:
        """``n`` timesteps at uniformly drawn training sigmas (the shifted distribution that SD3's
        training scripts use with weighting "none")."""
        index = torch.randint(0, self.num_train_timesteps, (n,), generator=generator, device=device)
        return self.sigmas.to(device)[index].float() * self.num_train_timesteps

    def scheduler(self, steps: int) -> Any:
        """diffusers' ``FlowMatchEulerDiscreteScheduler`` set for ``steps`` exactly as the pipeline
        sets it (its sigmas, ``mu``): the zero-noise reference the samplers are checked against."""
        from diffusers import FlowMatchEulerDiscreteScheduler

        scheduler = FlowMatchEulerDiscreteScheduler.from_config(self.scheduler_config)
        sigmas = numpy_linspace_sigmas(steps) if self.pipeline_sigmas else None
        scheduler.set_timesteps(steps, sigmas=sigmas, mu=self.inference_mu(steps))
        return scheduler

    def inference_mu(self, steps: int) -> float | None:
        """The ``mu`` the pipeline passes to ``set_timesteps`` for ``steps``: ``step_mu(steps)`` where
        the shift depends on the step count, else ``mu``."""
        return self.mu if self.step_mu is None else self.step_mu(steps)

    def inference_sigmas(self, steps: int) -> Tensor:
        """``[steps + 1]`` float32 sigmas, descending to 0, exactly as the pipeline sets them."""
        return _inference_sigmas(self, steps).clone()


UNSUPPORTED_FLOW_OPTIONS = {
    "stochastic_sampling": "its step re-noises the sample, so zero noise is no longer the Euler step "
                           "the samplers' transitions reduce to",
    "invert_sigmas": "its sigmas ascend, while the samplers integrate from noise (sigma 1) to data",
}


def check_flow_scheduler(config: dict, mu: float | None) -> None:
    """A ``ValueError`` naming a scheduler option the flow-matching samplers cannot honour, before any work."""
    for option, why in UNSUPPORTED_FLOW_OPTIONS.items():
        if config.get(option):
            raise ValueError(f"the scheduler config sets {option} = {config[option]!r}, which the framework "
                             f"cannot honour: {why}. Set it to false.")
    if config.get("use_dynamic_shifting") and mu is None:
        raise ValueError("the scheduler config sets use_dynamic_shifting = true, so the pipeline shifts its "
                         "sigmas by a mu computed from the image's token count: the policy must pass mu "
                         "(kit.diffusers_policy.flow_matching_process(scheduler, mu=...)), or set "
                         "use_dynamic_shifting = false")


def numpy_linspace_sigmas(steps: int) -> Any:
    """The sigmas FluxPipeline and QwenImagePipeline pass: ``np.linspace(1, 1/N, N)``."""
    import numpy as np

    return np.linspace(1.0, 1 / steps, steps)


@functools.lru_cache(maxsize=32)
def _inference_sigmas(process: FlowMatchingProcess, steps: int) -> Tensor:
    """Computed once per process (hashed by identity) and step count."""
    return process.scheduler(steps).sigmas.float()
