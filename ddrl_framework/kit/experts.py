"""A denoiser made of experts switched by timestep: Wan 2.2 A14B runs a high-noise transformer
while ``t >= boundary`` and a low-noise one below it (``WanPipeline``'s ``transformer`` and
``transformer_2`` at ``boundary_ratio * num_train_timesteps``).

:class:`TimestepExperts` is one ``torch.nn.Module`` holding both, so everything that handles "the
denoiser" handles the pair: the trainable parameters and their names (``high.*``, ``low.*``), the
reverse-KL reference (a copy, or adapters disabled), checkpoints, FSDP2 (the pair is the trainable
module) and LoRA (adapters are added to, disabled on and merged into each expert).

A batch may mix timesteps (the diffusion loss draws one per sample): each sample goes to its
expert and the outputs are put back in order. Inputs whose first dimension is the batch are split
with it; the others (none for Wan) are passed to both.

In a distributed world (``torch.distributed`` with more than one rank) every forward calls both
experts, whatever this rank's timesteps: FSDP2 gathers an expert's shards when it runs, so ranks
that called different experts would wait on different collectives, and DDP reduces the gradients
of every weight in each synchronized backward. An expert with no sample here runs on one sample
and adds its output times zero (zero gradients, no change to the result). One process calls only
the experts its samples need.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ddrl_framework.distributed.world import current_world


class TimestepExperts(torch.nn.Module):
    def __init__(self, high: torch.nn.Module, low: torch.nn.Module, boundary: float):
        super().__init__()
        self.high, self.low = high, low
        self.boundary = float(boundary)  # on the network's timestep scale

    @property
    def config(self) -> Any:
        return self.high.config

    def runs_high(self, timestep: Tensor) -> Tensor:
        """``[B]``: whether each sample at network ``timestep`` (``[B]``, or ``[B, tokens]`` for Wan 2.2
        TI2V's one per token) goes to the high-noise expert, as the pipeline routes it."""
        per_sample = timestep if timestep.ndim == 1 else timestep[:, 0]
        return per_sample >= self.boundary

    def forward(self, *, timestep: Tensor, **inputs: Any) -> tuple[Tensor]:
        high = self.runs_high(timestep)
        every_expert = current_world().distributed
        if not every_expert and (bool(high.all()) or not bool(high.any())):
            expert = self.high if bool(high.all()) else self.low
            return expert(timestep=timestep, **inputs)
        batch = timestep.shape[0]
        out: Tensor | None = None
        idle: list[Tensor] = []  # outputs of an expert run for the other ranks' sake
        for expert, rows in ((self.high, high), (self.low, ~high)):
            if not bool(rows.any()):
                if every_expert:
                    one = torch.arange(batch, device=rows.device) == 0
                    idle.append(expert(timestep=timestep[one], **_rows(inputs, one, batch))[0])
                continue
            part = expert(timestep=timestep[rows], **_rows(inputs, rows, batch))[0]
            out = part.new_empty((batch, *part.shape[1:])) if out is None else out
            out[rows] = part
        if idle:  # in the graph, so their weights get (zero) gradients on every rank; a real sample at
            # a timestep the expert was not trained for: were its output not finite, 0 * it would be NaN
            out = out + sum(0 * part.sum() for part in idle)
        return (out,)

    # --- what diffusers' PeftAdapterMixin and ModelMixin offer one model, for both ---------
    def _on_both(self, method: str, *args: Any) -> None:
        for expert in (self.high, self.low):
            getattr(expert, method)(*args)

    def add_adapter(self, config: Any) -> None:
        self._on_both("add_adapter", config)

    def disable_adapters(self) -> None:
        self._on_both("disable_adapters")

    def enable_adapters(self) -> None:
        self._on_both("enable_adapters")

    def fuse_lora(self) -> None:
        self._on_both("fuse_lora")

    def unload_lora(self) -> None:
        self._on_both("unload_lora")

    def enable_gradient_checkpointing(self) -> None:
        self._on_both("enable_gradient_checkpointing")


def _rows(inputs: dict[str, Any], rows: Tensor, batch: int) -> dict[str, Any]:
    return {k: v[rows] if isinstance(v, Tensor) and v.ndim and v.shape[0] == batch else v for k, v in inputs.items()}
