"""Regularizer ``none``: no regularization (the DDPO / DanceGRPO baseline)."""

from __future__ import annotations

import attrs
import torch
from torch import Tensor

from ddrl_framework.contexts import StepContext
from ddrl_framework.hookspecs import hookimpl


@hookimpl
def register_regularizers(register):
    register("none", NoRegularizer)


@attrs.frozen(kw_only=True)
class NoRegularizer:
    name = "none"
    needs_reference = False
    needs_reference_transition = False
    needs_data = False

    def loss(self, context: StepContext) -> dict[str, Tensor]:
        return {"loss_none": torch.zeros((), device=context.transition.mean.device)}
