"""Small, fast stand-ins for the components a plugin under test is not."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import Tensor, nn

from ddrl_framework.contexts import EvalContext, StepContext, UpdateContext
from ddrl_framework.kit.chain import rollout_chain
from ddrl_framework.kit.forward_process import DdpmProcess, ForwardProcessDelegation, ddim_variance
from ddrl_framework.kit.fused import with_transitions
from ddrl_framework.kit.module_weights import ModuleWeights
from ddrl_framework.protocols import Policy, Regularizer, Sampler
from ddrl_framework.types import DataBatch, Gaussian, Trajectory


def _cosine_alphas_cumprod(steps: int) -> Tensor:
    t = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
    f = torch.cos((t + 0.008) / 1.008 * torch.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    return torch.cumprod(1 - betas, dim=0).float()


class _TinyDenoiser(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels + 1, channels, 3, padding=1)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        time = (t.float() / 1000).reshape(-1, 1, 1, 1).expand(x.shape[0], 1, *x.shape[2:])
        return self.conv(torch.cat([x, time], dim=1))


class FakePolicy(ForwardProcessDelegation, ModuleWeights):
    """A one-convolution epsilon predictor with a cosine DDPM schedule; images ``[B, C, S, S]``."""

    def __init__(self, channels: int = 1, size: int = 8, seed: int = 0, frozen: bool = False):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.model = _TinyDenoiser(channels)
        self.forward_process = DdpmProcess(alphas_cumprod=_cosine_alphas_cumprod(1000))
        self.sample_shape = (channels, size, size)
        self._reference: FakePolicy | None = None
        self._reference_names: tuple[str, ...] | None = None  # set on a reference view
        if frozen:
            self.model.requires_grad_(False)

    def encode_conditions(self, batch: DataBatch) -> None:
        return None

    def predict(self, x_t: Tensor, t: Tensor, cond) -> Tensor:
        return self.model(x_t, t.expand(x_t.shape[0]))

    def decode(self, latents: Tensor) -> Tensor:
        return ((latents + 1) / 2).clamp(0, 1)

    def encode(self, pixels: Tensor) -> Tensor:
        return pixels * 2 - 1

    def _weights(self) -> nn.Module:
        return self.model

    def reference(self) -> FakePolicy:
        if self._reference is None:
            names = tuple(name for name, _ in self.named_trainable_parameters())
            reference = copy.deepcopy(self)
            reference.model.requires_grad_(False)
            reference._reference_names = names
            self._reference = reference
        return self._reference

    def save_pretrained(self, directory: str | Path) -> None:
        Path(directory).mkdir(parents=True, exist_ok=True)
        torch.save(self.model.state_dict(), Path(directory) / "fake.pt")

    def to(self, device) -> FakePolicy:
        self.model.to(device)
        return self


@attrs.frozen(kw_only=True)
class FakeSampler:
    """DDPM's ancestral sampler as DDIM at eta = 1 over ``num_steps`` evenly spaced timesteps, for
    an epsilon-predicting policy with a :class:`DdpmProcess` (the contracts' stand-in; every
    step is stochastic)::

        var = (1 - a_prev) / (1 - a_t) (1 - a_t / a_prev),   x0 = (x - sqrt(1 - a_t) eps) / sqrt(a_t)
        x_{k+1} ~ N(sqrt(a_prev) x0 + sqrt(1 - a_prev - var) eps, var I)
    """

    num_steps: int = 4

    def _timesteps(self, total: int) -> Tensor:
        return total - 1 - torch.arange(self.num_steps) * (total // self.num_steps)

    def _coefficients(self, policy: Policy, k: int, device) -> tuple[int, Tensor, Tensor, Tensor]:
        """``t_k``, ``a_t``, ``a_prev`` and the step's variance."""
        a = policy.forward_process.alphas_cumprod.to(device)
        t = int(self._timesteps(len(a))[k])
        a_t, a_prev = a[t], a[max(t - len(a) // self.num_steps, 0)]
        return t, a_t, a_prev, ddim_variance(a_t, a_prev)

    def _step(self, x0: Tensor, eps: Tensor, a_prev: Tensor, variance: Tensor) -> Gaussian:
        return Gaussian(mean=a_prev.sqrt() * x0 + (1 - a_prev - variance).sqrt() * eps, std=variance.sqrt())

    def transition(self, policy: Policy, x_k: Tensor, k: int, cond) -> Gaussian:
        t, a_t, a_prev, variance = self._coefficients(policy, k, x_k.device)
        eps = policy.predict(x_k, torch.full((x_k.shape[0],), t, device=x_k.device), cond)
        return self._step((x_k - (1 - a_t).sqrt() * eps) / a_t.sqrt(), eps, a_prev, variance)

    def posterior(self, policy: Policy, x_k: Tensor, k: int, x0: Tensor) -> Gaussian:
        """``q(x_{k+1} | x_k, x0)``: the step with ``x0`` as the prediction."""
        _, a_t, a_prev, variance = self._coefficients(policy, k, x_k.device)
        return self._step(x0, (x_k - a_t.sqrt() * x0) / (1 - a_t).sqrt(), a_prev, variance)

    def check_trainable(self, policy: Policy, steps) -> None:
        """Every step is stochastic."""

    @torch.no_grad()
    def rollout(self, policy: Policy, cond, noise: Tensor, generator=None) -> Trajectory:
        timesteps = self._timesteps(len(policy.forward_process.alphas_cumprod))
        return rollout_chain(self, policy, cond, noise, generator, timesteps)


class FakeBackbone:
    """A fast policy and sampler, for the contract suites of the components that use them."""

    def make_policy(self) -> Policy:
        return FakePolicy()

    def make_sampler(self) -> Sampler:
        return FakeSampler()


def fake_batch(n: int, sample_shape: tuple[int, ...] = (1, 8, 8), seed: int = 0) -> DataBatch:
    """``n`` prompts with labels and data ``x0``: pixels uniform in [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    return DataBatch(
        prompts=tuple(f"prompt {i % 3}" for i in range(n)),
        labels=torch.arange(n) % 3,
        x0=torch.rand((n, *sample_shape), generator=generator),
    )


def pixel_shape(policy: Policy) -> tuple[int, ...]:
    """What ``policy.decode`` returns for one sample: ``pixel_shape`` for a latent policy."""
    return tuple(getattr(policy, "pixel_shape", policy.sample_shape))


@torch.no_grad()
def perturb(policy: Policy, scale: float = 0.05, seed: int = 0) -> None:
    """Move every trainable weight of ``policy`` by seeded Gaussian noise of std ``scale``: take
    ``policy.reference()`` first, and the policy then differs from it (a KL to it is not 0)."""
    generator = torch.Generator().manual_seed(seed)
    for p in policy.trainable_parameters():
        p.add_(scale * torch.randn(p.shape, generator=generator).to(p.device, p.dtype))


@attrs.frozen(kw_only=True)
class Needs:
    """What a regularizer declares it reads; :meth:`of` ``None``: everything."""

    data: bool = True
    reference: bool = True
    reference_transition: bool = True

    @classmethod
    def of(cls, regularizer: Regularizer | None) -> Needs:
        if regularizer is None:
            return cls()
        return cls(data=bool(getattr(regularizer, "needs_data", False)),
                   reference=bool(getattr(regularizer, "needs_reference", False)),
                   reference_transition=bool(getattr(regularizer, "needs_reference_transition", False)))

    def describe(self) -> str:
        """The context fields left None, and why: for failure messages."""
        fields = [("data", "needs_data", self.data), ("reference", "needs_reference", self.reference),
                  ("reference_transition", "needs_reference_transition", self.reference_transition)]
        unset = [f"context.{field} is None ({flag} is False)" for field, flag, wanted in fields if not wanted]
        return "; ".join(unset) or "every field is set"


@attrs.frozen(kw_only=True)
class _Rollout:
    data: DataBatch  # one member per group
    cond: Any  # the conditions of the groups x group_size members
    trajectory: Trajectory
    generator: torch.Generator


def _rollout(policy: Policy, sampler: Sampler, groups: int, group_size: int, seed: int) -> _Rollout:
    generator = torch.Generator().manual_seed(seed)
    data = fake_batch(groups, pixel_shape(policy), seed)
    members = data.repeat_each(group_size)
    cond = policy.encode_conditions(members)
    noise = torch.randn((len(members), *policy.sample_shape), generator=generator)
    trajectory = sampler.rollout(policy, cond, noise, generator)
    return _Rollout(data=data, cond=cond, trajectory=trajectory, generator=generator)


def make_step_context(
    policy: Policy, sampler: Sampler, *, groups: int = 2, group_size: int = 3, step: int = 0,
    reference: Policy | None = None, seed: int = 0, regularizer: Regularizer | None = None,
    is_first_trained_step: bool = True, fuse_extra: bool = False,
) -> StepContext:
    """A rollout of ``groups x group_size`` samples and the context of trained step ``step``.

    ``regularizer``: carry only what it declares, as the trainer does (``data`` if ``needs_data``,
    ``reference`` if ``needs_reference``, ``reference_transition`` if
    ``needs_reference_transition``; the others None); None: carry everything.
    ``reference`` (default: ``policy.reference()``) is the frozen reference policy.
    ``fuse_extra``: as the trainer does, ask the regularizer's optional ``extra_states`` and
    compute the transition there in the step's own network call (``kit.fused``).
    """
    needs, run = Needs.of(regularizer), _rollout(policy, sampler, groups, group_size, seed)
    frozen = None
    if needs.reference or needs.reference_transition:
        frozen = reference if reference is not None else policy.reference()
    reference_step = None
    if needs.reference_transition:
        with torch.no_grad():
            reference_step = sampler.transition(frozen, run.trajectory.latents[step], step, run.cond)
    context = StepContext(
        policy=policy, step=step, is_first_trained_step=is_first_trained_step, trajectory=run.trajectory,
        group_size=group_size, transition=None, sampler=sampler,
        reference=frozen if needs.reference else None, reference_transition=reference_step,
        data=run.data if needs.data else None, generator=run.generator,
    )
    return with_transitions(context, regularizer, run.cond, ask_extra=fuse_extra)


def make_update_context(
    policy: Policy, sampler: Sampler, *, groups: int = 2, group_size: int = 3,
    reference: Policy | None = None, seed: int = 0, regularizer: Regularizer | None = None,
) -> UpdateContext:
    """What a regularizer's ``update_loss`` sees once per optimizer step, after a rollout of
    ``groups x group_size`` samples; ``regularizer`` and ``reference`` as in :func:`make_step_context`."""
    needs, run = Needs.of(regularizer), _rollout(policy, sampler, groups, group_size, seed)
    frozen = None
    if needs.reference:
        frozen = reference if reference is not None else policy.reference()
    return UpdateContext(policy=policy, reference=frozen, trajectory=run.trajectory, group_size=group_size,
                         data=run.data if needs.data else None, generator=run.generator)


def make_eval_context(policy: Policy, sampler: Sampler, *, count: int = 16, seed: int = 0,
                      reference: Policy | None = None) -> EvalContext:
    """An evaluation of ``count`` samples of ``policy``, scored by brightness, against a held-out
    set of ``2 * count`` fake images."""
    generator = torch.Generator().manual_seed(seed)
    held_out = fake_batch(2 * count, pixel_shape(policy), seed + 1)
    conditions = fake_batch(count, pixel_shape(policy), seed)
    cond = policy.encode_conditions(conditions)
    noise = torch.randn((count, *policy.sample_shape), generator=generator)
    with torch.no_grad():
        trajectory = sampler.rollout(policy, cond, noise, generator)
        samples = policy.decode(trajectory.final)

    def brightness(pixels, prompts):
        return pixels.float().flatten(1).mean(1)

    return EvalContext(
        policy=policy, reference=reference if reference is not None else policy.reference(),
        sampler=sampler, trajectory=trajectory, cond=cond, samples=samples,
        prompts=conditions.prompts, rewards=brightness(samples, conditions.prompts),
        score=brightness, held_out=held_out,
    )
