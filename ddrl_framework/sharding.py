"""How the trainable weights live across ranks (``train.sharding``).

``"none"``: every rank holds all weights; gradients are averaged by one all-reduce before each
optimizer step (DistributedDataParallel's semantics). ``"fsdp2"``: the policy's trainable module
is sharded with ``torch.distributed.fsdp.fully_shard`` (each child with parameters, then the
root), for models whose weights, gradients and optimizer state do not fit one device; every
forward then involves every rank, so evaluations and grids run on all ranks, and checkpoints are
gathered into full state dicts (rank 0 writes them in the usual safetensors format).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict

from ddrl_framework.distributed import World, average_gradients
from ddrl_framework.errors import UserError


class Replicated:
    collective_forward = False  # rank 0 may run a forward alone

    def __init__(self, policy: Any, optimizer: torch.optim.Optimizer, world: World):
        self.policy, self.optimizer, self.world = policy, optimizer, world

    def reduce_gradients(self, params: list[torch.nn.Parameter]) -> None:
        average_gradients(params, self.world)

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return self.policy.trainable_state_dict(), self.optimizer.state_dict()

    def load(self, weights: dict[str, torch.Tensor], optimizer_state: dict[str, Any]) -> None:
        self.policy.load_trainable_state_dict(weights)
        self.optimizer.load_state_dict(optimizer_state)


class Fsdp2(Replicated):
    collective_forward = True
    OPTIONS = StateDictOptions(full_state_dict=True, cpu_offload=True)

    def __init__(self, policy: Any, optimizer_factory, world: World):
        from torch.distributed.fsdp import fully_shard

        if not hasattr(policy, "trainable_module"):
            raise UserError("train.sharding = \"fsdp2\" needs a policy with trainable_module() (the "
                            "nn.Module to shard); this policy has none: use sharding = \"none\"")
        self.module = policy.trainable_module()
        for unit in _units(self.module):
            fully_shard(unit)
        fully_shard(self.module)
        self.trainable = {n for n, p in self.module.named_parameters() if p.requires_grad}
        super().__init__(policy, optimizer_factory(), world)

    def reduce_gradients(self, params: list[torch.nn.Parameter]) -> None:
        pass  # fully_shard reduce-scatters (and averages) the gradients in the backward

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Full state dicts, gathered from every rank (call on all ranks)."""
        weights, optimizer = get_state_dict(self.module, self.optimizer, options=self.OPTIONS)
        return {k: v for k, v in weights.items() if k in self.trainable}, optimizer

    def load(self, weights: dict[str, torch.Tensor], optimizer_state: dict[str, Any]) -> None:
        set_state_dict(self.module, self.optimizer, model_state_dict=weights, optim_state_dict=optimizer_state,
                       options=StateDictOptions(full_state_dict=True, strict=False))


def _units(module: torch.nn.Module) -> list[torch.nn.Module]:
    """The children with trainable weights, looking inside ``ModuleList`` / ``ModuleDict`` (blocks)."""
    units = []
    for child in module.children():
        inner = child.children() if isinstance(child, (torch.nn.ModuleList, torch.nn.ModuleDict)) else [child]
        units += [m for m in inner if any(p.requires_grad for p in m.parameters())]
    return units


def full_norm(norm: torch.Tensor) -> torch.Tensor:
    """A gradient norm as a plain tensor (``clip_grad_norm_`` returns a DTensor under FSDP2)."""
    return norm.full_tensor() if hasattr(norm, "full_tensor") else norm
