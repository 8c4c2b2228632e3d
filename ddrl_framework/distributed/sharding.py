"""How the trainable weights live across ranks (``train.sharding``), and how they are checkpointed.

``"ddp"`` (default): every rank holds all weights. The policy's trainable module is wrapped in
place by torch's composable DistributedDataParallel (``replicate``), which all-reduces gradient
buckets while the backward of the last step before each optimizer step runs (the backwards
before it, within one ``train.denoising_steps_per_update`` window, do not communicate). A policy without
``trainable_module()`` gets the same average from one flat all-reduce before the optimizer step.

``"fsdp2"``: the trainable module is sharded with ``torch.distributed.fsdp.fully_shard`` (each
child with parameters, then the root), for models whose weights, gradients and optimizer state
do not fit one device; every forward then involves every rank, so evaluations and grids run on
all ranks.

Checkpoints (``ddrl_framework.running.checkpoint``) hold ``get_state_dict`` of a layout's module
and optimizer: plain tensors under ``"ddp"``, each rank's DTensor shards under ``"fsdp2"``.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from ddrl_framework.distributed.world import World, average_gradients
from ddrl_framework.errors import UserError
from ddrl_framework.protocols import HasTrainableModule

# a forward that rank 0 runs alone (evaluations, grids) must not broadcast buffers
_NO_BUFFER_SYNC_IN_FORWARD = ({"forward_sync_buffers": False}
                              if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
                              else {"broadcast_buffers": False})  # older torch


class Layout:
    """One process, or replicated weights averaged by one flat all-reduce (no trainable_module)."""

    collective_forward = False  # rank 0 may run a forward alone

    def __init__(self, policy: Any, optimizer_factory, world: World):
        self.world = world
        self.module = trainable_module(policy)
        self.distribute()
        self.optimizer: torch.optim.Optimizer = optimizer_factory()  # after fully_shard: DTensor params

    def distribute(self) -> None:
        pass

    def sync_gradients_in_next_backward(self, sync: bool) -> None:
        pass

    def reduce_gradients(self, params: list[torch.nn.Parameter]) -> None:
        average_gradients(params, self.world)


class Ddp(Layout):
    """Wrapped in place, so the policy keeps calling its own module (same object, same keys)."""

    def distribute(self) -> None:
        from torch.distributed._composable.replicate import replicate

        device = next(self.module.parameters()).device
        replicate(self.module, device_id=device, **_NO_BUFFER_SYNC_IN_FORWARD)
        replicate.state(self.module).lazy_init()  # now, on every rank: construction is collective

    def sync_gradients_in_next_backward(self, sync: bool) -> None:
        self.module.set_requires_gradient_sync(sync)

    def reduce_gradients(self, params: list[torch.nn.Parameter]) -> None:
        pass  # DDP averaged them in the backward


class Fsdp2(Layout):
    collective_forward = True

    def distribute(self) -> None:
        from torch.distributed.fsdp import fully_shard

        if isinstance(self.module, _Parameters):
            raise UserError("train.sharding = \"fsdp2\" needs a policy with trainable_module() (the "
                            "nn.Module to shard); this policy has none: use sharding = \"ddp\"")
        for unit in _units(self.module):
            fully_shard(unit)
        fully_shard(self.module)

    def reduce_gradients(self, params: list[torch.nn.Parameter]) -> None:
        pass  # fully_shard reduce-scatters (and averages) the gradients in the backward


def layout(sharding: str, policy: Any, optimizer_factory, world: World) -> Layout:
    """The ``train.sharding`` layout for this world (a world of one needs none; a policy without
    ``trainable_module()`` gets the flat all-reduce instead of DDP)."""
    if not world.distributed or (sharding == "ddp" and not isinstance(policy, HasTrainableModule)):
        return Layout(policy, optimizer_factory, world)
    return {"ddp": Ddp, "fsdp2": Fsdp2}[sharding](policy, optimizer_factory, world)


class _Parameters(torch.nn.Module):
    """A policy's trainable parameters as one module, for a policy without ``trainable_module()``."""

    def __init__(self, params):
        super().__init__()
        self.params = torch.nn.ParameterList(params)


def trainable_module(policy: Any) -> torch.nn.Module:
    if isinstance(policy, HasTrainableModule):
        return policy.trainable_module()
    return _Parameters(policy.trainable_parameters())


def _units(module: torch.nn.Module) -> list[torch.nn.Module]:
    """The children with trainable weights, looking inside ``ModuleList`` / ``ModuleDict`` (blocks)."""
    units = []
    for child in module.children():
        inner = child.children() if isinstance(child, (torch.nn.ModuleList, torch.nn.ModuleDict)) else [child]
        units += [m for m in inner if any(p.requires_grad for p in m.parameters())]
    return units


def full_tensor(value: torch.Tensor) -> torch.Tensor:
    """A plain tensor: a DTensor (FSDP2's shards, or ``clip_grad_norm_``'s norm) gathered whole."""
    return value.full_tensor() if hasattr(value, "full_tensor") else value
