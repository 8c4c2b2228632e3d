"""Regularizer ``kl-in-reward``: the reverse KL to the reference put into the reward (DPOK's form,
arXiv 2305.16381), beside ``reverse-kl``'s per-step loss.

After each rollout, every sample's reward gets ``-beta * sum_k KL(p_old(x_{k+1} | x_k) ||
p_ref(x_{k+1} | x_k))`` over its trajectory's stochastic steps, each KL the exact one of two
Gaussians in nats (``||mu_old - mu_ref||^2 / (2 sigma_k^2)``, summed over elements), with the
rollout policy's recorded means. The objective is ``E_p[r] - beta KL(p || p_ref)`` over the path,
whose optimum is ``p_ref(x) exp(r(x) / beta)``.

The gradient of the path KL ``E_p[sum_k l_k]``, ``l_k = log p(x_{k+1} | x_k) / p_ref(x_{k+1} | x_k)``,
has two parts (Tang and Munos, arXiv 2506.09477):

* through the sampled states: ``E[sum_k KL_k(x_k) sum_{j<k} grad log p(x_{j+1} | x_j)]``, which
  the KL in the reward gives through the score function; and
* at the states: ``E[sum_k grad_theta KL_k(x_k)]``, the part that ``reverse-kl``'s per-step
  loss gives. The reward term cannot: ``KL_k(x_k)`` is a constant given ``x_k``, and its score
  ``grad log p(x_{k+1} | x_k)`` has mean zero given ``x_k``.

``per_step = false`` (default, DPOK's form): the first part only, and the per-step loss is zero;
``per_step = true``: both, ``reverse-kl``'s loss at every trained step added, so the gradient is
the path KL's whole gradient over the trained steps (the exactly solvable benchmark measures
each, docs/comparisons.md).
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
    per_step: bool = False  # also reverse-kl's per-step loss: the KL's whole gradient (module docstring)
    name = "kl_in_reward"
    needs_reference = True
    needs_data = False

    @property
    def needs_reference_transition(self) -> bool:
        return self.per_step

    def loss(self, context: StepContext) -> dict[str, Tensor]:
        """``beta KL(p_theta(. | x_k) || p_ref(. | x_k))`` at the rollout's state with ``per_step``, else 0."""
        if not self.per_step:
            return {"loss_kl_in_reward": torch.zeros((), device=context.transition.mean.device)}
        return {"loss_kl_in_reward": self.beta * context.transition.kl(context.reference_transition).mean()}

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
