"""Regularizer ``kl-in-reward``: the reverse KL to the reference put into the reward, beside
``reverse-kl``'s per-step loss.

After each rollout, every sample's reward gets ``-beta`` times an estimate of its path's log
ratio to the reference, summed over the trajectory's stochastic steps, in nats. The objective is
``E_p[r] - beta KL(p || p_ref)`` over the path, whose optimum is ``p_ref(x) exp(r(x) / beta)``.

The gradient of the path KL ``E_p[sum_k l_k]``, ``l_k = log p(x_{k+1} | x_k) / p_ref(x_{k+1} | x_k)``,
has two parts (Tang and Munos, arXiv 2506.09477):

* through the sampled states: ``E[sum_k KL_k(x_k) sum_{j<k} grad log p(x_{j+1} | x_j)]``; and
* at the states: ``E[sum_k grad_theta KL_k(x_k)]``, the part that ``reverse-kl``'s per-step
  loss gives.

``estimator`` picks what goes into the reward:

* ``"sampled"`` (default): the sampled log ratio ``l_k`` itself, with the rollout policy's means
  (the classical RLHF penalty, Ziegler et al. arXiv 1909.08593). Through the score function it
  gives **both** parts: ``E[l_k grad log p(x_{k+1} | x_k) | x_k] = grad KL_k(x_k)``. So it is the
  whole gradient of the path KL, with no per-step loss.
* ``"analytic"``: the exact ``KL_k(x_k) = ||mu_old - mu_ref||^2 / (2 sigma_k^2)``, a constant
  given ``x_k`` whose score has mean zero, so only the first part. Alone it has no force that
  pulls a step's mean back towards the reference's at a given state, and it drifts without
  bound (docs/comparisons.md measures it); it warns. With ``per_step = true`` the per-step loss
  adds the second part, and the two together are the whole gradient again.

DPOK (Fan et al., arXiv 2305.16381, Algorithm 1) is neither: its KL gradient is the per-step
``grad KL`` at the sampled states, which is ``reverse-kl``.
"""

from __future__ import annotations

import warnings
from typing import Literal

import attrs
import torch
from torch import Tensor

from ddrl_framework.contexts import RolloutContext, StepContext
from ddrl_framework.hookspecs import hookimpl
from ddrl_framework.types import Gaussian

ANALYTIC_ALONE = ("kl-in-reward: estimator = \"analytic\" without per_step follows only the part of the path "
                  "KL's gradient through the sampled states, and has no fixed point near p_ref exp(r / beta): "
                  "use estimator = \"sampled\" (the default), or per_step = true")


@hookimpl
def register_regularizers(register):
    register("kl-in-reward", KLInReward)


def _per_step_only_with_analytic(instance, attribute, value: bool) -> None:
    if value and instance.estimator == "sampled":
        raise ValueError("kl-in-reward: per_step = true with estimator = \"sampled\" would count the KL's "
                         "gradient at the states twice (the sampled log ratio already gives it); use "
                         "estimator = \"analytic\" with per_step = true, or drop per_step")


@attrs.frozen(kw_only=True)
class KLInReward:
    beta: float = attrs.field(default=0.01, validator=attrs.validators.ge(0.0))  # nats
    # what goes into the reward: the sampled log ratio (the whole gradient) or the exact KL (one part)
    estimator: Literal["sampled", "analytic"] = attrs.field(
        default="sampled", validator=attrs.validators.in_(("sampled", "analytic")))
    # with "analytic": also reverse-kl's per-step loss, the other part of the gradient
    per_step: bool = attrs.field(default=False, validator=_per_step_only_with_analytic)
    name = "kl_in_reward"
    beta_unit = "nats"  # how a comparison's labels name beta's unit
    needs_reference = True
    needs_data = False

    def __attrs_post_init__(self) -> None:
        if self.estimator == "analytic" and not self.per_step and self.beta > 0:
            warnings.warn(ANALYTIC_ALONE, UserWarning, stacklevel=2)

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
        """``-beta`` times each sample's path log ratio (sampled) or path KL (analytic) ``[B]``."""
        step_term = sampled_log_ratio if self.estimator == "sampled" else analytic_kl
        return -self.beta * path_sum(context, step_term)


def sampled_log_ratio(old: Gaussian, reference: Gaussian, x_next: Tensor) -> Tensor:
    """``log p_old(x_{k+1} | x_k) - log p_ref(x_{k+1} | x_k)`` ``[B]``, both of the same std:
    ``(||x - mu_ref||^2 - ||x - mu_old||^2) / (2 sigma^2)``, written so that the two
    normalizers cancel exactly instead of in float32."""
    x, var = x_next.float(), 2 * old.std.float().square()
    gap = ((x - reference.mean.float()).square() - (x - old.mean.float()).square()) / var
    return gap.flatten(1).sum(dim=1)


def analytic_kl(old: Gaussian, reference: Gaussian, x_next: Tensor) -> Tensor:
    """``KL(p_old(. | x_k) || p_ref(. | x_k))`` ``[B]`` (``x_next`` unused)."""
    return old.kl(reference)


def path_sum(context: RolloutContext, step_term) -> Tensor:
    """``sum_k step_term(p_old(. | x_k), p_ref(. | x_k), x_{k+1})`` ``[B]`` over the trajectory's
    stochastic steps."""
    trajectory = context.trajectory
    total = torch.zeros(trajectory.latents.shape[1], device=trajectory.latents.device)
    for k in range(trajectory.num_steps):
        old = Gaussian(mean=trajectory.means[k], std=trajectory.stds[k])
        if old.is_deterministic:
            continue
        reference = context.sampler.transition(context.reference, trajectory.latents[k], k, context.cond)
        total = total + step_term(old, reference, trajectory.latents[k + 1])
    return total
