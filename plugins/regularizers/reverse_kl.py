"""Regularizer ``reverse-kl``: KL from the policy's transitions to the frozen reference's.

At step k both transitions are Gaussians with the sampler's std, so the KL is exact:
``beta * ||mu_theta - mu_ref||^2 / (2 sigma_k^2)`` summed over pixels, averaged over the batch
(Flow-GRPO / DPOK style; it is computed on the policy's own samples).
"""

from __future__ import annotations

import attrs
from torch import Tensor

from ddrl_framework.contexts import StepContext
from ddrl_framework.hookspecs import hookimpl


@hookimpl
def register_regularizers(register):
    register("reverse-kl", ReverseKL)


@attrs.frozen(kw_only=True)
class ReverseKL:
    beta: float = attrs.field(default=0.01, validator=attrs.validators.ge(0.0))
    name = "reverse_kl"
    beta_unit = "nats"  # how a comparison's labels name beta's unit
    needs_reference = False
    needs_reference_transition = True
    needs_data = False

    def loss(self, context: StepContext) -> dict[str, Tensor]:
        kl = context.transition.kl(context.reference_transition)
        return {"loss_reverse_kl": self.beta * kl.mean()}
