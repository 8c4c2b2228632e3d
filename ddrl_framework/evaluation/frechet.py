"""Frechet distance between Gaussians fitted to features, with optional importance weights, and
the reweightings of held-out data that the regularizers' optima are (docs/concepts.md, "What each estimator converges to")."""

from __future__ import annotations

import torch
from torch import Tensor


def weighted_moments(features: Tensor, weights: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Mean ``[D]`` and covariance ``[D, D]`` (float64) of ``features`` ``[N, D]``.

    With ``weights`` ``[N]`` (normalized here), the reliability-weighted unbiased covariance.
    """
    x = features.double()
    if weights is None:
        return x.mean(0), torch.cov(x.T)
    w = weights.double() / weights.double().sum()
    mean = w @ x
    centered = x - mean
    covariance = (centered.T * w) @ centered / (1 - w.square().sum())
    return mean, covariance


def frechet_distance(mean1: Tensor, cov1: Tensor, mean2: Tensor, cov2: Tensor) -> float:
    """``||m1 - m2||^2 + Tr(C1 + C2 - 2 (C1^1/2 C2 C1^1/2)^1/2)``, through symmetric eigendecompositions."""
    values, vectors = torch.linalg.eigh(cov1)
    root1 = (vectors * values.clamp(min=0).sqrt()) @ vectors.T
    middle = torch.linalg.eigvalsh(root1 @ cov2 @ root1).clamp(min=0).sqrt().sum()
    return float((mean1 - mean2).square().sum() + cov1.trace() + cov2.trace() - 2 * middle)


def exp_tilt_weights(rewards: Tensor, temperature: float) -> Tensor:
    """``p* = p_data exp(r / T)``: the reverse-KL optimum (and DDRL's in the paper's form)."""
    return torch.softmax(rewards.double() / temperature, dim=0)


def forward_kl_weights(rewards: Tensor, beta: float, iterations: int = 200) -> Tensor:
    """``p* = beta p_data / (lambda - r)``, the optimum of ``E_p[r] - beta KL(p_data || p)``, with
    lambda > max r fixed by normalization (bisection on ``mean(beta / (lambda - r)) = 1``)."""
    r = rewards.double()
    low, high = r.max(), r.max() + beta  # the mean is > 1 just above max r and <= 1 at max r + beta
    for _ in range(iterations):
        middle = (low + high) / 2
        if (beta / (middle - r)).mean() > 1:
            low = middle
        else:
            high = middle
    weights = beta / (high - r)
    return weights / weights.sum()


def target_weights(weighting: str, rewards: Tensor, temperature: float) -> Tensor | None:
    """Weights of held-out data for a target: ``none`` (None: the data as they are),
    ``exp-tilt`` or ``forward-kl``."""
    if weighting == "exp-tilt":
        return exp_tilt_weights(rewards, temperature)
    if weighting == "forward-kl":
        return forward_kl_weights(rewards, temperature)
    if weighting != "none":
        raise ValueError(f"unknown weighting '{weighting}'")
    return None
