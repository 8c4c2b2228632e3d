"""The energy distance between two weighted samples (Szekely and Rizzo, "Energy statistics", 2013):

    D^2(P, Q) = 2 E|X - Y| - E|X - X'| - E|Y - Y'|,      X, X' ~ P,  Y, Y' ~ Q independent,

zero exactly when P = Q, and sensitive to every difference between them, not only to moments. On
samples ``x`` ``[N, D]`` with weights ``a`` ``[N]`` and ``y`` ``[M, D]`` with weights ``b`` ``[M]``
(each normalized to sum 1; uniform when omitted) it is estimated by the V-statistic

    D^2 = 2 sum_ij a_i b_j |x_i - y_j| - sum_ij a_i a_j |x_i - x_j| - sum_ij b_i b_j |y_i - y_j|,

the squared distance of the two weighted empirical measures under the energy kernel, so it is
never negative. Between two finite samples of one distribution it is positive in expectation,
about ``E|X - X'| (sum a_i^2 + sum b_j^2)``: a noise floor that shrinks with the effective
sample sizes ``1 / sum a_i^2`` and ``1 / sum b_j^2``, which is why a distance to a target is
reported beside the distance of an independent sample of that target itself.
"""

from __future__ import annotations

import torch
from torch import Tensor


def normalized_weights(weights: Tensor | None, n: int, device: torch.device) -> Tensor:
    """``weights`` ``[n]`` as float64 summing to 1 (uniform when None)."""
    if weights is None:
        return torch.full((n,), 1.0 / n, dtype=torch.float64, device=device)
    if weights.shape != (n,):
        raise ValueError(f"weights of shape {tuple(weights.shape)} for {n} points; expected [{n}]")
    w = weights.to(device=device, dtype=torch.float64)
    if (w < 0).any() or not torch.isfinite(w).all() or w.sum() <= 0:
        raise ValueError("weights must be finite, non-negative and not all zero")
    return w / w.sum()


def mean_distance(x: Tensor, a: Tensor | None, y: Tensor, b: Tensor | None, chunk: int = 1024) -> float:
    """``sum_ij a_i b_j |x_i - y_j|`` for points ``x`` ``[N, D]``, ``y`` ``[M, D]`` (Euclidean,
    float64, ``chunk`` rows of ``x`` at a time so that memory stays ``O(chunk M)``)."""
    x, y = x.double().flatten(1), y.double().flatten(1).to(x.device)
    a, b = normalized_weights(a, len(x), x.device), normalized_weights(b, len(y), x.device)
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    for start in range(0, len(x), chunk):
        rows = slice(start, start + chunk)
        total += a[rows] @ torch.cdist(x[rows], y) @ b
    return float(total)


def energy_distance(x: Tensor, y: Tensor, x_weights: Tensor | None = None, y_weights: Tensor | None = None,
                    *, y_self: float | None = None) -> float:
    """The V-statistic ``D^2`` of the module docstring between ``x`` ``[N, ...]`` and ``y``
    ``[M, ...]`` (flattened to vectors). ``y_self``: ``mean_distance(y, b, y, b)`` when the caller
    has it already (a fixed target compared with many samples)."""
    if y_self is None:
        y_self = mean_distance(y, y_weights, y, y_weights)
    cross = mean_distance(x, x_weights, y, y_weights)
    return max(2 * cross - mean_distance(x, x_weights, x, x_weights) - y_self, 0.0)
