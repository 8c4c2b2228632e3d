"""The two protocols of the denoising chain, which the contexts carry: :class:`Policy` (the
denoiser and its forward process) and :class:`Sampler` (the reverse-time chain over it).

Import them from ``ddrl_framework.protocols``, which re-exports them beside the other protocols;
they live here, below ``ddrl_framework.contexts``, so that the contexts can name them and the
protocols that receive a context can name the context, without an import cycle.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from ddrl_framework.types import DataBatch, Gaussian, NoiseSource, Trajectory


@runtime_checkable
class Policy(Protocol):
    """A backbone adapter: the denoiser and its forward (noising) process.

    ``sample_shape``: the shape of one latent, e.g. ``(1, 8, 8)``.
    ``forward_process``: the noising process a sampler reads (``ddrl_framework.kit.forward_process``:
    ``DdpmProcess``, ``FlowMatchingProcess``, or a plugin's own).

    Optional: ``trainable_module() -> nn.Module``, the module holding the trainable weights,
    which DDP wraps, FSDP2 shards and checkpoints are keyed by (``train.sharding``;
    :class:`HasTrainableModule`).
    """

    sample_shape: tuple[int, ...]
    forward_process: Any

    def encode_conditions(self, batch: DataBatch) -> Any:
        """Conditions for ``predict`` from a batch of ``B`` prompts or labels (None: unconditional)."""

    def predict(self, x_t: Tensor, t: Tensor, cond: Any) -> Tensor:
        """The network output (epsilon, v or flow velocity) for ``x_t`` ``[B, ...]`` at timesteps ``t`` ``[B]``."""

    def add_noise(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """``x_t`` from clean ``x0`` and ``noise`` (both ``[B, ...]``) at timesteps ``t`` ``[B]``."""

    def training_target(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """What ``predict`` is trained to output at ``x_t = add_noise(x0, noise, t)``."""

    def diffusion_loss(
        self,
        x0: Tensor,
        cond: Any,
        *,
        noise: Tensor | None = None,
        t: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """The backbone's pre-training loss (scalar), with the pre-training weighting.

        ``noise`` and ``t`` default to fresh Gaussian noise and uniform random timesteps.
        """

    def decode(self, latents: Tensor) -> Tensor:
        """Latents ``[B, ...]`` to pixels in ``[0, 1]``: ``[B, C, H, W]`` or ``[B, C, T, H, W]``."""

    def encode(self, pixels: Tensor) -> Tensor:
        """Pixels in ``[0, 1]`` to latents (the inverse of ``decode``)."""

    def trainable_parameters(self) -> Iterable[torch.nn.Parameter]: ...

    def named_trainable_parameters(self) -> Iterable[tuple[str, Tensor]]:
        """The trainable weights by name, one to one with ``trainable_parameters()`` (same tensors,
        same order). On the ``reference()`` view: the same names, each with the reference's frozen
        value (``requires_grad`` False), so a regularizer can pair a weight with its reference."""

    def trainable_state_dict(self) -> dict[str, Tensor]: ...

    def load_trainable_state_dict(self, state: Mapping[str, Tensor]) -> None: ...

    def reference(self) -> Policy:
        """A frozen view of the policy as it was before fine-tuning (for reverse KL)."""

    def save_pretrained(self, directory: str | Path) -> None:
        """Write a folder that the plugin's ``pretrained=`` option loads back: the core reads and
        sets that option by this name (``ddrl_framework.roles.PRETRAINED_OPTION``)."""

    def to(self, device: torch.device | str) -> Policy: ...


@runtime_checkable
class Sampler(Protocol):
    """The reverse-time discretization, as a chain of Gaussian transitions.

    Optional: ``posterior(policy, x_k, k, x0) -> Gaussian``, step ``k``'s transition when the
    prediction is ``x0`` itself (the forward posterior ``q(x_{k+1} | x_k, x0)``), which the data
    term in nats needs (``forward-kl-data`` with ``unit = "nats"``; :class:`HasPosterior`);
    ``default_trained_steps(policy) -> list[int]``, the steps trained when
    ``train.trained_denoising_steps`` is not set (without it: all; :class:`HasDefaultTrainedSteps`);
    ``deterministic()``, its zero-noise variant, and with it ``scheduler_step(policy, x_k, k,
    cond)``, the reference scheduler's step that variant equals (:class:`NamesAScheduler`).
    """

    num_steps: int

    def rollout(self, policy: Policy, cond: Any, noise: Tensor, generator: NoiseSource) -> Trajectory:
        """Sample from ``noise`` ``[B, ...]`` without gradients, recording every step.

        ``generator`` is where the step noise comes from: a ``torch.Generator`` in one process,
        a ``NoiseStream`` under torchrun (the noise a single process would draw, drawn ahead and
        sliced to this rank). Draw it with ``Gaussian.sample(generator)`` or
        ``ddrl_framework.types.standard_normal(like, generator)``, which take both.
        """

    def transition(self, policy: Policy, x_k: Tensor, k: int, cond: Any) -> Gaussian:
        """The Gaussian ``p(x_{k+1} | x_k)`` of step ``k`` (differentiable in the policy)."""

    def check_trainable(self, policy: Policy, steps: Sequence[int]) -> None:
        """Raise ``ValueError`` if any of ``steps`` is deterministic (std 0: no density to train),
        naming the option that would make it stochastic. Called before any rollout."""


# --- what a policy or a sampler may have besides: the core asks with isinstance ---------------


@runtime_checkable
class HasTrainableModule(Protocol):
    """A policy whose trainable weights sit in one module, which DDP wraps, FSDP2 shards and
    checkpoints are keyed by (``train.sharding``)."""

    def trainable_module(self) -> torch.nn.Module: ...


@runtime_checkable
class HasPosterior(Protocol):
    """A sampler with step ``k``'s transition when the prediction is ``x0`` itself (the forward
    posterior ``q(x_{k+1} | x_k, x0)``): the data term in nats needs it."""

    def posterior(self, policy: Policy, x_k: Tensor, k: int, x0: Tensor) -> Gaussian: ...


@runtime_checkable
class HasDefaultTrainedSteps(Protocol):
    """A sampler that says which steps to train when ``train.trained_denoising_steps`` is not set."""

    def default_trained_steps(self, policy: Policy) -> list[int]: ...


@runtime_checkable
class HasDeterministicVariant(Protocol):
    """A sampler with a zero-noise variant of itself (std 0 at every step)."""

    def deterministic(self) -> Sampler: ...


@runtime_checkable
class WrapsPipeline(Protocol):
    """A policy around a diffusers pipeline (its ``pipeline``): the pipeline-fidelity check compares
    the policy's rollouts with that pipeline's own ``__call__``, run under the policy's ``autocast()``
    and judged at the precision of its ``compute_dtype``."""

    pipeline: Any
    compute_dtype: torch.dtype

    def autocast(self) -> AbstractContextManager: ...


@runtime_checkable
class FollowsPipelineSchedule(Protocol):
    """A sampler that can run at zero noise on a diffusers pipeline's own schedule (the
    pipeline-fidelity check): ``(this sampler's deterministic form set as the pipeline sets its
    schedule, the diffusers scheduler the pipeline then samples with)``."""

    def on_pipeline_schedule(self, policy: WrapsPipeline) -> tuple[Sampler, Any]: ...


@runtime_checkable
class NamesAScheduler(HasDeterministicVariant, Protocol):
    """A sampler whose zero-noise variant must equal a reference scheduler's step, which it gives."""

    def scheduler_step(self, policy: Policy, x_k: Tensor, k: int, cond: Any) -> Tensor: ...
