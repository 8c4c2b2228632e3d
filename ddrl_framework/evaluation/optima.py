"""Each regularizer's optimum as a reweighting of a base sample (docs/concepts.md, the table of
optima), and exact draws from a reweighted sample.

A base measure is given by points with probabilities ``q`` ``[M]`` (a sample of ``p_data`` or of
the reference, ``q_i = 1 / M``; or a grid, ``q_i = p(x_i) dx``) and the reward ``r`` ``[M]`` of
each point. With raw advantages:

* ``E_p[r] - beta KL(p || p_base)`` is maximal at ``p* = p_base exp(r / beta) / Z``
  (:func:`exp_tilt`): reverse KL with ``p_base = p_ref``, and DDRL in the paper's form with
  ``p_base = p_data``;
* ``E_p[r] - beta KL(p_data || p)`` is maximal at ``p* = beta p_data / (lambda - r)``
  (:func:`forward_kl`), lambda > max r fixed by ``sum_i q_i beta / (lambda - r_i) = 1``
  (:func:`forward_kl_lambda`; stationarity of the Lagrangian ``r + beta p_data / p = lambda``).

``evaluation.frechet`` has the same two reweightings for uniform base samples; these take any
base probabilities, so that the same functions serve a grid.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ddrl_framework.evaluation.energy import normalized_weights


def exp_tilt(rewards: Tensor, beta: float, base: Tensor | None = None) -> Tensor:
    """Probabilities ``[M]`` proportional to ``q_i exp(r_i / beta)`` (computed in log space)."""
    r = rewards.double()
    q = normalized_weights(base, len(r), r.device)
    return torch.softmax(q.log() + r / beta, dim=0)


def forward_kl_lambda(rewards: Tensor, beta: float, base: Tensor | None = None, iterations: int = 200) -> float:
    """lambda > max r with ``sum_i q_i beta / (lambda - r_i) = 1``, by bisection: the sum is
    decreasing in lambda, unbounded just above max r and at most 1 at ``max r + beta``."""
    r = rewards.double()
    q = normalized_weights(base, len(r), r.device)
    support = r[q > 0]
    low, high = float(support.max()), float(support.max()) + beta
    for _ in range(iterations):
        middle = (low + high) / 2
        if middle == low or middle == high:
            break
        if float((q * beta / (middle - r)).sum()) > 1:
            low = middle
        else:
            high = middle
    return high


def forward_kl(rewards: Tensor, beta: float, base: Tensor | None = None) -> Tensor:
    """Probabilities ``[M]``: ``q_i beta / (lambda - r_i)``, normalized (they sum to 1 up to the
    bisection's tolerance before normalizing)."""
    r = rewards.double()
    q = normalized_weights(base, len(r), r.device)
    weights = q * beta / (forward_kl_lambda(r, beta, q) - r)
    return weights / weights.sum()


def effective_size(weights: Tensor) -> float:
    """Kish's effective sample size ``1 / sum w_i^2`` of normalized ``weights``."""
    w = normalized_weights(weights, len(weights), weights.device)
    return float(1 / w.square().sum())


def exact_draws(points: Tensor, weights: Tensor, count: int, generator: torch.Generator) -> Tensor:
    """Up to ``count`` distinct points ``[n, ...]`` of ``points`` ``[M, ...]`` accepted with
    probability ``w_i / max w`` in a random order (rejection sampling): when ``points`` are an
    i.i.d. sample of ``p_base`` and ``w`` the reweighting, they are i.i.d. draws of
    ``p_base w / Z`` without the repeats that resampling with replacement makes. Fewer than
    ``count`` come back when the pool is too small (the caller checks)."""
    w = weights.double().cpu()
    order = torch.randperm(len(w), generator=generator)
    accepted = torch.rand(len(w), generator=generator, dtype=torch.float64) * w.max() < w
    chosen = order[accepted[order]][:count]
    return points[chosen.to(points.device)]
