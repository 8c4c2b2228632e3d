"""Small, fast stand-ins for the components a plugin under test is not."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from pathlib import Path

import attrs
import torch
from torch import Tensor, nn

from ddrl_framework.kit.chain import rollout_chain
from ddrl_framework.kit.forward_process import DdpmProcess
from ddrl_framework.protocols import Policy, Sampler
from ddrl_framework.types import DataBatch, EvalContext, Gaussian, StepContext, Trajectory


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


class FakePolicy:
    """A one-convolution epsilon predictor with a cosine DDPM schedule; images ``[B, C, S, S]``."""

    def __init__(self, channels: int = 1, size: int = 8, seed: int = 0, frozen: bool = False):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.model = _TinyDenoiser(channels)
        self.forward_process = DdpmProcess(alphas_cumprod=_cosine_alphas_cumprod(1000))
        self.sample_shape = (channels, size, size)
        self._reference: FakePolicy | None = None
        if frozen:
            self.model.requires_grad_(False)

    def encode_conditions(self, batch: DataBatch) -> None:
        return None

    def predict(self, x_t: Tensor, t: Tensor, cond) -> Tensor:
        return self.model(x_t, t.expand(x_t.shape[0]))

    def add_noise(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        return self.forward_process.add_noise(x0, noise, t)

    def training_target(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        return self.forward_process.training_target(x0, noise, t)

    def diffusion_loss(self, x0, cond, *, noise=None, t=None, generator=None) -> Tensor:
        return self.forward_process.diffusion_loss(self.predict, x0, cond, noise=noise, t=t, generator=generator)

    def decode(self, latents: Tensor) -> Tensor:
        return ((latents + 1) / 2).clamp(0, 1)

    def encode(self, pixels: Tensor) -> Tensor:
        return pixels * 2 - 1

    def trainable_parameters(self) -> Iterable[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def trainable_state_dict(self) -> dict[str, Tensor]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def load_trainable_state_dict(self, state: Mapping[str, Tensor]) -> None:
        self.model.load_state_dict(dict(state))

    def reference(self) -> FakePolicy:
        if self._reference is None:
            self._reference = copy.deepcopy(self)
            self._reference.model.requires_grad_(False)
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

    def transition(self, policy: Policy, x_k: Tensor, k: int, cond) -> Gaussian:
        a = policy.forward_process.alphas_cumprod.to(x_k.device)
        t = int(self._timesteps(len(a))[k])
        a_t, a_prev = a[t], a[max(t - len(a) // self.num_steps, 0)]
        variance = (1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)
        eps = policy.predict(x_k, torch.full((x_k.shape[0],), t, device=x_k.device), cond)
        x0 = (x_k - (1 - a_t).sqrt() * eps) / a_t.sqrt()
        mean = a_prev.sqrt() * x0 + (1 - a_prev - variance).sqrt() * eps
        return Gaussian(mean=mean, std=variance.sqrt())

    def check_trainable(self, policy: Policy, steps) -> None:
        """Every step is stochastic."""

    @torch.no_grad()
    def rollout(self, policy: Policy, cond, noise: Tensor, generator=None) -> Trajectory:
        timesteps = self._timesteps(len(policy.forward_process.alphas_cumprod))
        return rollout_chain(self, policy, cond, noise, generator, timesteps)


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


def make_step_context(
    policy: Policy, sampler: Sampler, *, groups: int = 2, group_size: int = 3, step: int = 0,
    reference: Policy | None = None, seed: int = 0,
) -> StepContext:
    """A rollout of ``groups x group_size`` samples and the context of trained step ``step``.

    ``reference`` (default: ``policy.reference()``) gives the reference transition.
    """
    generator = torch.Generator().manual_seed(seed)
    data = fake_batch(groups, pixel_shape(policy), seed)
    members = data.repeat_each(group_size)
    cond = policy.encode_conditions(members)
    noise = torch.randn((len(members), *policy.sample_shape), generator=generator)
    trajectory = sampler.rollout(policy, cond, noise, generator)
    with torch.no_grad():
        frozen = reference if reference is not None else policy.reference()
        reference_step = sampler.transition(frozen, trajectory.latents[step], step, cond)
    return StepContext(
        policy=policy, step=step, is_first_trained_step=True, trajectory=trajectory,
        group_size=group_size, transition=sampler.transition(policy, trajectory.latents[step], step, cond),
        reference_transition=reference_step, data=data, generator=generator,
    )


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
