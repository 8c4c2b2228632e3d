"""Regularizer ``forward-kl-data`` (DDRL, arXiv 2512.04332): the forward KL from data to policy.

The forward KL ``KL(p_data || p_theta)`` reduces to the backbone's own diffusion loss on data
(exactly under the ELBO weighting), so the added loss is ``beta * L_diffusion(x0_data, c)``.

Options, as in the official implementation:
* ``noise = "rollout"``: noise each group's data sample with that group's rollout initial noise, at
  the trained step's timestep; ``"fresh"``: fresh noise at a uniformly random timestep;
* ``every_step = false``: add the loss on the first trained step only.
"""

from __future__ import annotations

from typing import Literal

import attrs
import torch
from torch import Tensor

from ddrl_framework.hookspecs import hookimpl
from ddrl_framework.types import StepContext


@hookimpl
def register_regularizers(register):
    register("forward-kl-data", ForwardKLData)


@attrs.frozen(kw_only=True)
class ForwardKLData:
    # the data loss is a per-element mean (about 0.1 for the digits model), while the reverse KL
    # sums over elements and divides by 2 sigma^2: the two betas are on different scales
    beta: float = attrs.field(default=10.0, validator=attrs.validators.ge(0.0))
    noise: Literal["rollout", "fresh"] = "rollout"
    every_step: bool = True
    name = "forward_kl_data"
    needs_reference = False
    needs_reference_transition = False
    needs_data = True

    def loss(self, context: StepContext) -> dict[str, Tensor]:
        if not (self.every_step or context.is_first_trained_step):
            return {"loss_forward_kl_data": torch.zeros((), device=context.transition.mean.device)}
        data = context.data
        if data is None or data.x0 is None:
            raise ValueError("forward-kl-data needs a data source that yields x0 with its prompts")
        policy = context.policy
        x0 = policy.encode(data.x0)
        noise = t = None
        if self.noise == "rollout":
            noise = context.trajectory.initial_noise[:: context.group_size][: x0.shape[0]]
            t = context.trajectory.timesteps[context.step].expand(x0.shape[0])
        loss = policy.diffusion_loss(x0, policy.encode_conditions(data), noise=noise, t=t,
                                     generator=context.generator)
        return {"loss_forward_kl_data": self.beta * loss}
