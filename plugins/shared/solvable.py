"""The exactly solvable benchmark's closed forms: an isotropic Gaussian mixture on R^d, its tilt by a
quadratic reward, and a grid on which the other optima are integrated numerically.

With ``p_data = sum_i w_i N(mu_i, s_i^2 I)`` and ``r(x) = -a ||x - c||^2``, the exponential tilt
``p_data(x) exp(r(x) / beta)`` is again such a mixture: ``exp(r / beta)`` is proportional to
``N(x; c, tau^2 I)`` with ``tau^2 = beta / (2 a)``, and the product of two Gaussians is
(Bishop, PRML eq. 2.115-2.117, isotropic case)

    N(x; mu_i, s_i^2 I) N(x; c, tau^2 I) = N(mu_i; c, (s_i^2 + tau^2) I) N(x; mu_i', s_i'^2 I),
    1 / s_i'^2 = 1 / s_i^2 + 1 / tau^2,    mu_i' = s_i'^2 (mu_i / s_i^2 + c / tau^2),

so the tilted mixture has components ``N(mu_i', s_i'^2 I)`` with weights proportional to
``w_i N(mu_i; c, (s_i^2 + tau^2) I)`` (:meth:`GaussianMixture.tilted`). The forward-KL optimum
``beta p_data / (lambda - r)`` is no mixture; :func:`grid` gives the cells on which it (and any
other density) is integrated in 2-D.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import attrs
import torch
from torch import Tensor


def _float64(values) -> Tensor:
    return torch.as_tensor(values, dtype=torch.float64)


@attrs.frozen(kw_only=True, eq=False)
class GaussianMixture:
    """``sum_i w_i N(mu_i, s_i^2 I)``: ``means`` ``[C, d]``, ``stds`` ``[C]``, ``weights`` ``[C]``
    (float64, summing to 1)."""

    means: Tensor
    stds: Tensor
    weights: Tensor

    @classmethod
    def of(cls, means: Sequence[Sequence[float]], stds: Sequence[float],
           weights: Sequence[float] | None = None) -> GaussianMixture:
        """From config values: one std shared by every component, or one per component; equal
        weights when None (normalized here)."""
        mu = _float64(means)
        if mu.ndim != 2 or len(mu) == 0:
            raise ValueError(f"means must be a non-empty list of points, got shape {tuple(mu.shape)}")
        count = len(mu)
        s = _float64(stds).reshape(-1)
        if len(s) == 1:
            s = s.expand(count).clone()
        w = torch.ones(count, dtype=torch.float64) if weights is None else _float64(weights).reshape(-1)
        if len(s) != count or len(w) != count:
            raise ValueError(f"{count} means need 1 or {count} stds and {count} weights; "
                             f"got {len(s)} stds and {len(w)} weights")
        if (s <= 0).any() or (w < 0).any() or w.sum() <= 0:
            raise ValueError("stds must be > 0 and weights >= 0, not all zero")
        return cls(means=mu, stds=s, weights=w / w.sum())

    @property
    def dim(self) -> int:
        return int(self.means.shape[1])

    def distribution(self) -> torch.distributions.MixtureSameFamily:
        """The same mixture as a ``torch.distributions`` object (an independent reference)."""
        normal = torch.distributions.Normal(self.means, self.stds[:, None].expand_as(self.means))
        return torch.distributions.MixtureSameFamily(
            torch.distributions.Categorical(probs=self.weights), torch.distributions.Independent(normal, 1))

    def log_prob(self, x: Tensor) -> Tensor:
        """``log p(x)`` ``[N]`` for points ``x`` ``[N, d]``."""
        x = x.double()
        squared = torch.cdist(x, self.means.to(x.device)).square()  # [N, C]
        var = self.stds.square().to(x.device)
        log_components = -squared / (2 * var) - 0.5 * self.dim * torch.log(2 * math.pi * var)
        return torch.logsumexp(log_components + self.weights.log().to(x.device), dim=1)

    def sample(self, count: int, generator: torch.Generator) -> Tensor:
        """``count`` i.i.d. points ``[count, d]`` (float64), from ``generator`` alone."""
        component = torch.multinomial(self.weights, count, replacement=True, generator=generator)
        noise = torch.randn((count, self.dim), generator=generator, dtype=torch.float64)
        return self.means[component] + self.stds[component, None] * noise

    def mean(self) -> Tensor:
        """``E[x]`` ``[d]``."""
        return self.weights @ self.means

    def covariance(self) -> Tensor:
        """``Cov[x]`` ``[d, d]``: within-component variances plus the spread of the means."""
        centered = self.means - self.mean()
        within = (self.weights * self.stds.square()).sum() * torch.eye(self.dim, dtype=torch.float64)
        return within + (centered.T * self.weights) @ centered

    def tilted(self, center: Sequence[float], scale: float, beta: float) -> GaussianMixture:
        """``p(x) exp(-scale ||x - center||^2 / beta)``, normalized (module docstring)."""
        if scale <= 0 or beta <= 0:
            raise ValueError(f"the tilt needs scale > 0 and beta > 0, got {scale} and {beta}")
        c, tau2, var = _float64(center), beta / (2 * scale), self.stds.square()
        new_var = 1 / (1 / var + 1 / tau2)
        new_means = new_var[:, None] * (self.means / var[:, None] + c / tau2)
        joint = var + tau2  # N(mu_i; c, (s_i^2 + tau^2) I), in log space
        log_w = (self.weights.log() - (self.means - c).square().sum(1) / (2 * joint)
                 - 0.5 * self.dim * torch.log(2 * math.pi * joint))
        return GaussianMixture(means=new_means, stds=new_var.sqrt(), weights=torch.softmax(log_w, 0))


def quadratic_reward(points: Tensor, center: Sequence[float], scale: float) -> Tensor:
    """``r(x) = -scale ||x - center||^2`` ``[N]`` for points ``[N, d]`` (the ``quadratic`` reward)."""
    c = torch.as_tensor(center, dtype=points.dtype, device=points.device)
    return -scale * (points.flatten(1) - c).square().sum(1)


def grid(low: float, high: float, cells: int) -> tuple[Tensor, float]:
    """The centres ``[cells^2, 2]`` (float64) of a ``cells x cells`` grid over ``[low, high]^2`` and
    the area of one cell: a midpoint rule for integrals over the square."""
    width = (high - low) / cells
    axis = low + width * (torch.arange(cells, dtype=torch.float64) + 0.5)
    xs, ys = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1), width * width
