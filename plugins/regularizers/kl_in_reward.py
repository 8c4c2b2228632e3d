"""Regularizer ``kl-in-reward``: the reverse KL to the reference put into the reward (DPOK's form,
arXiv 2305.16381), beside ``reverse-kl``'s per-step loss.

After each rollout, every sample's reward gets ``-beta * sum_k KL(p_old(x_{k+1} | x_k) ||
p_ref(x_{k+1} | x_k))`` over its trajectory's stochastic steps, each KL the exact one of two
Gaussians in nats (``||mu_old - mu_ref||^2 / (2 sigma_k^2)``, summed over elements), with the
rollout policy's recorded means. The policy gradient then carries the KL's whole gradient along
the path, including the part through the sampled states that a per-step loss leaves out (Tang
and Munos, arXiv 2506.09477): the objective is ``E_p[r] - beta KL(p || p_ref)`` over the path,
whose optimum is ``p_ref(x) exp(r(x) / beta)``. The per-step loss is zero.
"""

from __future__ import annotations

import attrs
import torch
from torch import Tensor

from ddrl_framework.hookspecs import hookimpl
from ddrl_framework.types import Gaussian, RolloutContext, StepContext


@hookimpl
def register_regularizers(register):
    register("kl-in-reward", KLInReward)


@attrs.frozen(kw_only=True)
class KLInReward:
    beta: float = attrs.field(default=0.01, validator=attrs.validators.ge(0.0))  # nats
    name = "kl_in_reward"
    needs_reference = True
    needs_reference_transition = False
    needs_data = False

    def loss(self, context: StepContext) -> dict[str, Tensor]:
        return {"loss_kl_in_reward": torch.zeros((), device=context.transition.mean.device)}

    @torch.no_grad()
    def reward_term(self, context: RolloutContext) -> Tensor:
        """``-beta`` times each sample's path KL to the reference ``[B]``."""
        return -self.beta * path_kl(context)


def path_kl(context: RolloutContext) -> Tensor:
    """``sum_k KL(p_old(. | x_k) || p_ref(. | x_k))`` ``[B]`` over the trajectory's stochastic steps."""
    trajectory = context.trajectory
    total = torch.zeros(trajectory.latents.shape[1], device=trajectory.latents.device)
    for k in range(trajectory.num_steps):
        old = Gaussian(mean=trajectory.means[k], std=trajectory.stds[k])
        if old.is_deterministic:
            continue
        reference = context.sampler.transition(context.reference, trajectory.latents[k], k, context.cond)
        total = total + old.kl(reference)
    return total
