"""The protocols that plugins implement; plugins need not inherit from anything.

The design's five: :class:`Policy`, :class:`Sampler`, :class:`RewardModel`, :class:`Regularizer`,
:class:`DataSource`. Beside them :class:`Metric` (an evaluation plugin) and
:class:`ResumableIterator` (what a data source's ``loader`` returns). The value objects they pass
are in ``ddrl_framework.types``, the contexts a regularizer or metric receives in
``ddrl_framework.contexts``. ``Policy`` and ``Sampler`` are defined in ``ddrl_framework.denoising``
(below the contexts, which carry them) and imported from here like the rest.

Shapes: ``B`` batch, ``C, H, W`` channels and pixels (``C, T, H, W`` for video), ``K`` denoising
steps of a sampler.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from torch import Tensor

from ddrl_framework.contexts import (
    EvalContext,
    RolloutContext,
    StepContext,
    UpdateContext,
)
from ddrl_framework.denoising import (
    FollowsPipelineSchedule,
    HasDefaultTrainedSteps,
    HasDeterministicVariant,
    HasPosterior,
    HasTrainableModule,
    NamesAScheduler,
    Policy,
    Sampler,
    WrapsPipeline,
)
from ddrl_framework.metric_key import MetricKey
from ddrl_framework.types import DataBatch, ExtraStates

__all__ = [
    "DataSource", "DeclaresKeys", "FollowsPipelineSchedule", "HasDefaultTrainedSteps", "HasDeterministicVariant",
    "HasExtraStates", "HasPosterior", "HasRewardTerm", "HasTrainableModule", "HasUpdateLoss", "Logger", "Metric",
    "NamesAScheduler", "Policy", "Regularizer", "ResumableIterator", "RewardModel", "Sampler", "WrapsPipeline",
]


@runtime_checkable
class RewardModel(Protocol):
    """Scores samples: pixels in ``[0, 1]``, ``[B, C, H, W]`` or ``[B, C, T, H, W]``, to ``[B]``."""

    def __call__(
        self, samples: Tensor, prompts: Sequence[str], metadata: Mapping[str, Any]
    ) -> Tensor: ...


@runtime_checkable
class Regularizer(Protocol):
    """A loss added to the policy loss at each trained step.

    ``name``: the metric key is ``loss_<name>`` (``ddrl_framework.roles.loss_key``; every key of
    ``loss`` starts with ``roles.LOSS_PREFIX``). A ``beta`` option, where the plugin takes one, is
    the weight ``ddrl compare``'s ``betas`` and ``--beta`` set (``roles.BETA_OPTION``).
    What the trainer computes for it:
    ``needs_reference``: the frozen reference policy (``context.reference``);
    ``needs_reference_transition``: the reference's transition at each trained step
    (``context.reference_transition``); ``needs_data``: the data batch (``context.data``).

    Optional: ``update_loss(context: UpdateContext) -> dict[str, Tensor]``, a loss added once per
    optimizer step (e.g. a penalty on the weights), beside the per-step ``loss``; and
    ``reward_term(context: RolloutContext) -> Tensor`` ``[B]``, added to each sample's reward
    before the advantages (e.g. ``-beta`` times the path's KL to the reference: DPOK's form);
    ``extra_states(context: StepContext) -> ExtraStates | None``, other states of the trained
    step whose policy transition ``loss`` needs: the trainer computes it in the step's own
    network call and passes it as ``context.extra_transition`` (:class:`HasUpdateLoss`,
    :class:`HasRewardTerm`, :class:`HasExtraStates`).
    """

    name: str
    needs_reference: bool
    needs_reference_transition: bool
    needs_data: bool

    def loss(self, context: StepContext) -> dict[str, Tensor]:
        """Named scalar losses, ``{"loss_<name>": tensor}``; the trainer adds them all."""


@runtime_checkable
class HasUpdateLoss(Protocol):
    """A regularizer with a loss added once per optimizer step, beside the per-step ``loss``."""

    def update_loss(self, context: UpdateContext) -> dict[str, Tensor]: ...


@runtime_checkable
class HasRewardTerm(Protocol):
    """A regularizer with a term ``[B]`` added to each sample's reward before the advantages."""

    def reward_term(self, context: RolloutContext) -> Tensor: ...


@runtime_checkable
class HasExtraStates(Protocol):
    """A regularizer that asks for the policy's transition at other states of the trained step,
    computed in the step's own network call (``context.extra_transition``)."""

    def extra_states(self, context: StepContext) -> ExtraStates | None: ...


@runtime_checkable
class Metric(Protocol):
    """An evaluation metric: ``metric(context) -> {"name": float, ...}`` (keys get an ``eval_``
    prefix in ``eval.jsonl``). ``needs_reference`` asks the trainer for the frozen reference.

    Optional: a classmethod ``metric_keys(options) -> Sequence[MetricKey]``, the keys it reports
    with their direction, range and margin, which the comparison judges them by
    (:class:`DeclaresKeys`)."""

    needs_reference: bool

    def __call__(self, context: EvalContext) -> dict[str, float]: ...


@runtime_checkable
class DeclaresKeys(Protocol):
    """A metric whose class declares the keys it reports, from the options of its ``[[metrics]]``
    table (``name`` left out): each key's good direction, range and margin
    (:class:`~ddrl_framework.metric_key.MetricKey`). A classmethod: the comparison reads it
    without building the metric."""

    def metric_keys(self, options: Mapping[str, Any]) -> Sequence[MetricKey]: ...


@runtime_checkable
class Logger(Protocol):
    """Receives what a run logs, as it logs it (``metrics.jsonl`` and ``eval.jsonl`` are always
    written besides). Rank 0 alone calls it.

    ``start`` opens it for the run folder and returns one line saying where to look (e.g.
    ``tensorboard --logdir runs/x/tensorboard``); ``log_metrics`` gets one record of named
    floats at ``step`` (the iteration), ``kind`` ``"train"`` (each iteration) or ``"eval"``
    (each evaluation); ``log_samples`` gets pixels in [0, 1], images ``[N, C, H, W]`` or videos
    ``[N, C, T, H, W]`` (the evaluation's, at every evaluation); ``close`` flushes.
    """

    def start(self, output_dir: Path, config: Mapping[str, Any]) -> str: ...

    def log_metrics(self, values: Mapping[str, float], step: int, kind: str) -> None: ...

    def log_samples(self, name: str, pixels: Tensor, step: int) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class ResumableIterator(Protocol):
    """An endless iterator of batches whose position can be saved and restored."""

    def __iter__(self) -> Iterator[DataBatch]: ...

    def __next__(self) -> DataBatch: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@runtime_checkable
class DataSource(Protocol):
    """Prompts or conditions, with paired data ``x0`` where the source has it."""

    def loader(self, batch_size: int, seed: int) -> ResumableIterator:
        """An endless, resumable stream of training batches of ``batch_size``."""

    def held_out(self) -> DataBatch:
        """The fixed held-out split, for evaluation."""
