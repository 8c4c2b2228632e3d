"""Regularizer ``forward-kl-data`` (DDRL, arXiv 2512.04332): the forward KL from data to policy.

At trained step ``k`` the data batch ``x0`` is noised to the step's timestep, ``x_k =
add_noise(x0, eps, t_k)``, and the loss is one of two units (``unit``):

* ``"nats"`` (default): the exact Gaussian KL, summed over elements, between the sampler's
  transition with the data-conditioned prediction (the forward posterior ``q(x_{k+1} | x_k, x0)``:
  DDIM's posterior at the sampler's eta for ``ddim-sde``, the step with the velocity implied by
  ``x0`` for ``flow-sde``) and the policy's transition at ``x_k``::

      beta * ||mu_q - mu_theta||^2 / (2 sigma_k^2)

  the same formula as ``reverse-kl`` with another anchor and other states, so the two arms'
  betas are in the same unit (docs/concepts.md, "The arms, in one currency").
* ``"paper"``: ``beta * L_diffusion(x0, c)``, the per-element mean of the backbone's own
  pre-training loss, as the paper's code computes it. At step ``k`` it is ``D w_k`` times smaller
  than the KL in nats (``D`` elements, ``w_k = c_k^2 / (2 sigma_k^2)``), so its beta is not in nats.

Options, as in the official implementation: ``noise = "rollout"``: each group's data sample takes
that group's rollout initial noise at the trained step's timestep; ``"fresh"``: fresh noise (in
nats at the step's timestep, in the paper's unit at a uniformly random timestep);
``every_step = false``: the loss on the first trained step only.

In nats with rollout noise the data states ``x_k`` share the trained step's timestep, so the
regularizer hands them to the trainer (``extra_states``), which runs them through the same
network call as the rollout states (``kit.fused``): one forward and backward of batch
``B + groups`` instead of two (``fuse = false``: a separate call; the losses are the same).
"""

from __future__ import annotations

from typing import Literal

import attrs
import torch
from torch import Tensor

from ddrl_framework.contexts import StepContext
from ddrl_framework.hookspecs import hookimpl
from ddrl_framework.protocols import HasPosterior
from ddrl_framework.types import ExtraStates, Gaussian


@hookimpl
def register_regularizers(register):
    register("forward-kl-data", ForwardKLData)


@attrs.frozen(kw_only=True)
class ForwardKLData:
    beta: float = attrs.field(default=0.01, validator=attrs.validators.ge(0.0))
    unit: Literal["nats", "paper"] = "nats"  # nats: comparable with reverse-kl's beta
    noise: Literal["rollout", "fresh"] = "rollout"
    every_step: bool = True
    fuse: bool = True  # nats + rollout noise: the data states join the trained step's network call
    name = "forward_kl_data"
    needs_reference = False
    needs_reference_transition = False
    needs_data = True

    @property
    def beta_unit(self) -> str:
        """How a comparison's labels name beta's unit: ``unit``."""
        return self.unit

    def extra_states(self, context: StepContext) -> ExtraStates | None:
        """The data noised to the step (nats, rollout noise, ``fuse``): the trainer computes the
        policy's transition there in the trained step's own network call."""
        if not (self.fuse and self.unit == "nats" and self.noise == "rollout" and self._active(context)):
            return None
        policy = context.policy
        x0, cond = self._encoded(context)
        noise, t = self._noise_and_timesteps(context, x0)
        return ExtraStates(latents=policy.add_noise(x0, noise, t), cond=cond, x0=x0)

    def loss(self, context: StepContext) -> dict[str, Tensor]:
        if not self._active(context):
            return {"loss_forward_kl_data": torch.zeros((), device=context.transition.mean.device)}
        if context.extra_transition is not None:
            loss = self._kl_at(context, context.extra_states.latents, context.extra_states.x0,
                               context.extra_transition)
            return {"loss_forward_kl_data": self.beta * loss}
        policy = context.policy
        x0, cond = self._encoded(context)
        noise, t = self._noise_and_timesteps(context, x0)
        if self.unit == "nats":
            x_k, sampler = policy.add_noise(x0, noise, t), self._posterior_sampler(context)
            loss = self._kl_at(context, x_k, x0, sampler.transition(policy, x_k, context.step, cond))
        else:
            loss = policy.diffusion_loss(x0, cond, noise=noise, t=t, generator=context.generator)
        return {"loss_forward_kl_data": self.beta * loss}

    def _active(self, context: StepContext) -> bool:
        return self.every_step or context.is_first_trained_step

    @staticmethod
    def _encoded(context: StepContext) -> tuple[Tensor, object]:
        """The data batch's latents and conditions."""
        data = context.data
        if data is None or data.x0 is None:
            raise ValueError("forward-kl-data needs a data source that yields x0 with its prompts")
        return context.policy.encode(data.x0), context.policy.encode_conditions(data)

    def _noise_and_timesteps(self, context: StepContext, x0: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """The rollout's initial noise of each group (or fresh noise) and the step's timestep;
        ``(None, None)`` in the paper's unit with fresh noise (the loss draws both)."""
        t = context.trajectory.timesteps[context.step].expand(x0.shape[0])
        if self.noise == "rollout":
            return context.trajectory.initial_noise[:: context.group_size][: x0.shape[0]], t
        if self.unit == "paper":
            return None, None
        noise = torch.randn(x0.shape, generator=context.generator, device=x0.device, dtype=x0.dtype)
        return noise, t

    @staticmethod
    def _kl_at(context: StepContext, x_k: Tensor, x0: Tensor, policy_step: Gaussian) -> Tensor:
        """``KL(q(x_{k+1} | x_k, x0) || p_theta(x_{k+1} | x_k))``, ``policy_step`` the policy's
        transition at ``x_k``: summed over elements, averaged over the data batch."""
        with torch.no_grad():
            anchor = ForwardKLData._posterior_sampler(context).posterior(context.policy, x_k, context.step, x0)
        return anchor.kl(policy_step).mean()

    @staticmethod
    def _posterior_sampler(context: StepContext):
        """The context's sampler, which must have ``posterior`` for the KL in nats."""
        sampler = context.sampler
        if not isinstance(sampler, HasPosterior):
            raise ValueError("forward-kl-data with unit = \"nats\" needs a sampler with posterior(policy, "
                             "x_k, k, x0) (ddim-sde and flow-sde have it); or set unit = \"paper\"")
        return sampler
