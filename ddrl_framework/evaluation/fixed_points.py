"""Where each regularized estimator converges, in closed form, on a linear-Gaussian chain: the
twin of the exactly solvable benchmark (docs/comparisons.md, "Fixed points in closed form").

The chain, per coordinate (every coordinate is independent): ``x_0 ~ N(m_0, v_0)``, then ``K``
Gaussian steps. The reference's step ``k`` is ``N(a_k x + b_k, sigma_k^2)``: with a Gaussian
source and the exact denoiser every DDIM step mean is affine in ``x``
(:meth:`LinearGaussianChain.ddim`). The reward is ``r(x_K) = -s (x_K - c)^2``. A policy whose
step means are affine, ``mu_k(x) = p_k x + q_k`` at the same ``sigma_k``, can represent every
fixed point below.

An estimator's expected gradient at step ``k`` vanishes where, for every state ``x``,

    d/dmu { E[W_{k+1}(mu + sigma_k xi)] - beta_own (mu - mu_ref(x))^2 / (2 sigma_k^2) } = 0,
    W_k(x) = E[W_{k+1}(mu_k(x) + sigma_k xi)] - beta_value KL_k(x),     W_K = r,

``KL_k(x) = (mu_k(x) - mu_ref(x))^2 / (2 sigma_k^2)``. ``beta_own`` weighs the gradient of a
step's own KL at a fixed state, ``beta_value`` the KL as a cost-to-go that earlier steps see
through the states (Tang and Munos, arXiv 2506.09477):

* the path KL's whole gradient (``kl-in-reward`` sampled; analytic with ``per_step``): (beta, beta);
* the per-step loss at the sampled states (``reverse-kl``): (beta, 0);
* the exact per-step KL in the reward (``kl-in-reward`` analytic alone): (0, beta).

With ``W_{k+1}(y) = -A y^2 + B y + const`` the stationary mean is
``mu = (B + lam mu_ref(x)) / (2 A + lam)``, ``lam = beta_own / sigma_k^2``: affine again, and
``W_k`` stays quadratic, so one backward pass gives every step (:func:`fixed_point`). A baseline
that includes the sample (the group mean) scales the reward channel by ``(G - 1) / G``, so a
*loss* acts at ``G / (G - 1)`` times its beta; an untrained step keeps the reference's mean.

The data arms (``forward-kl-data`` in nats, and DDRL's exp-tilt form) weigh each step's KL by
the *data's* states ``x ~ q_k = N(sqrt(a_t) m, a_t v + 1 - a_t)``, not the policy's, so their
fixed point couples every step through the states and has no backward pass. But their expected
gradient is that of one function, ``J = E_p[f(x_K)] - beta sum_k E_{q_k}[KL_k(x)]`` (``f = r``,
or ``f = -exp(-(r - Z) / T)`` with ``Z`` fixed), every term a Gaussian moment, so
:func:`data_fixed_point` maximizes it in float64 (the data term is anchored at the reference's
mean: for the exact denoiser, ``E[mu_q(x_k, x0) | x_k] = mu_ref(x_k)``, and the rest is a
constant).
"""

from __future__ import annotations

import math

import attrs
import torch
from torch import Tensor

from ddrl_framework.kit.forward_process import gaussian_denoiser


def _float64(value) -> Tensor:
    return torch.as_tensor(value, dtype=torch.float64)


@attrs.frozen(kw_only=True)
class AffineChain:
    """Step means ``mu_k(x) = p_k x + q_k`` ``[K]`` each, at the chain's ``sigma_k``."""

    p: Tensor = attrs.field(converter=_float64)
    q: Tensor = attrs.field(converter=_float64)


@attrs.frozen(kw_only=True)
class LinearGaussianChain:
    """The reference chain (``a``, ``b``, ``sigma``: ``[K]``), its start, and the quadratic reward."""

    a: Tensor = attrs.field(converter=_float64)
    b: Tensor = attrs.field(converter=_float64)
    sigma: Tensor = attrs.field(converter=_float64)
    start_mean: float = 0.0
    start_var: float = 1.0
    center: float = 0.5  # c
    scale: float = 1.0  # s
    # the data's marginal at each step's timestep, N(sqrt(a_t) m, a_t v + 1 - a_t) ([K] each; the
    # data arms only)
    data_means: Tensor | None = attrs.field(default=None, converter=attrs.converters.optional(_float64))
    data_vars: Tensor | None = attrs.field(default=None, converter=attrs.converters.optional(_float64))
    source: tuple[float, float] | None = None  # the data's (mean, variance): p_data
    # coordinates the reward sums over: every other quantity here is per coordinate, but the
    # exp-tilt of a sum is a product, so DDRL's fixed point depends on them
    dims: int = 1

    @property
    def steps(self) -> int:
        return int(self.a.shape[0])

    @property
    def reference(self) -> AffineChain:
        return AffineChain(p=self.a, q=self.b)

    @classmethod
    def ddim(cls, *, a_t: Tensor, sqrt_a_prev: Tensor, direction: Tensor, std: Tensor, source_mean: float,
             source_var: float, **reward) -> LinearGaussianChain:
        """The DDIM chain (``ddim-sde``'s coefficients) of the exact denoiser of ``N(m, v)`` data:
        ``x0_hat(x) = m + sqrt(a) v (x - sqrt(a) m) / (a v + 1 - a)``,
        ``eps_hat = (x - sqrt(a) x0_hat) / sqrt(1 - a)``, step mean
        ``sqrt(a_prev) x0_hat + direction eps_hat``."""
        a, m, v = _float64(a_t), source_mean, source_var
        (x0_slope, x0_shift), (eps_slope, eps_shift) = gaussian_denoiser(a, m, v)
        up, side = _float64(sqrt_a_prev), _float64(direction)
        return cls(a=up * x0_slope + side * eps_slope, b=up * x0_shift + side * eps_shift, sigma=_float64(std),
                   data_means=a.sqrt() * m, data_vars=a * v + 1 - a, source=(m, v), **reward)


@attrs.frozen(kw_only=True)
class Estimator:
    """How an arm's gradient treats the KL to the reference (module docstring).

    ``loss_beta``: a per-step KL loss at the sampled states; ``reward_beta`` with ``reward_kl``:
    the KL put into the reward, as the sampled log ratio (``"sampled"``) or the exact per-step KL
    (``"analytic"``); ``trained``: the trained steps (None: all); ``biased_group``: the group size
    when the baseline is the group mean including the sample (None: leave-one-out)."""

    loss_beta: float = 0.0
    reward_beta: float = 0.0
    reward_kl: str = "sampled"
    trained: tuple[int, ...] | None = None
    biased_group: int | None = None

    def weights(self) -> tuple[float, float]:
        """``(beta_own, beta_value)``."""
        loss = self.loss_beta * (self.biased_group / (self.biased_group - 1) if self.biased_group else 1.0)
        own = loss + (self.reward_beta if self.reward_kl == "sampled" else 0.0)
        return own, self.reward_beta


def fixed_point(chain: LinearGaussianChain, estimator: Estimator) -> AffineChain:
    """The affine chain where ``estimator``'s expected gradient vanishes (module docstring): one
    backward pass from ``W_K = r``. Where nothing ties a step (no reward curvature and no KL),
    every mean is stationary and the step keeps the reference's."""
    own, value = estimator.weights()
    trained = set(range(chain.steps) if estimator.trained is None else estimator.trained)
    curvature, slope = chain.scale, 2 * chain.scale * chain.center  # W = -A y^2 + B y
    p, q = chain.a.clone(), chain.b.clone()
    for k in reversed(range(chain.steps)):
        a, b, var = chain.a[k], chain.b[k], chain.sigma[k] ** 2
        lam = own / var
        if k in trained and 2 * curvature + lam > 0:
            p[k], q[k] = lam * a / (2 * curvature + lam), (slope + lam * b) / (2 * curvature + lam)
        gap_p, gap_q = p[k] - a, q[k] - b
        curvature, slope = (curvature * p[k] ** 2 + value * gap_p ** 2 / (2 * var),
                            slope * p[k] - 2 * curvature * p[k] * q[k] - value * gap_p * gap_q / var)
    return AffineChain(p=p, q=q)


def marginals(chain: LinearGaussianChain, policy: AffineChain) -> tuple[Tensor, Tensor]:
    """The means and variances ``[K + 1]`` of ``x_0 .. x_K`` under ``policy``'s step means."""
    means, variances = [_float64(chain.start_mean)], [_float64(chain.start_var)]
    for k in range(chain.steps):
        means.append(policy.p[k] * means[-1] + policy.q[k])
        variances.append(policy.p[k] ** 2 * variances[-1] + chain.sigma[k] ** 2)
    return torch.stack(means), torch.stack(variances)


def path_kl(chain: LinearGaussianChain, policy: AffineChain) -> float:
    """``KL(policy's path || reference's path)`` per coordinate, in nats:
    ``sum_k E[((p_k - a_k) x_k + q_k - b_k)^2] / (2 sigma_k^2)``."""
    means, variances = marginals(chain, policy)
    return float(step_kls(chain, policy, means[:-1], variances[:-1]).sum())


def step_kls(chain: LinearGaussianChain, policy: AffineChain, means: Tensor, variances: Tensor) -> Tensor:
    """``E[KL_k(x)]`` ``[K]`` for states ``x ~ N(means[k], variances[k])`` (the policy's own, or the
    data's): ``E[((p_k - a_k) x + q_k - b_k)^2] / (2 sigma_k^2)``."""
    dp, dq = policy.p - chain.a, policy.q - chain.b
    return ((dp * means + dq) ** 2 + dp ** 2 * variances) / (2 * chain.sigma ** 2)


def _mean_reward(chain: LinearGaussianChain, mean: Tensor, var: Tensor) -> Tensor:
    """``E[r(x)]`` of one coordinate for ``x ~ N(mean, var)``: ``-s ((mean - c)^2 + var)``."""
    return -chain.scale * ((mean - chain.center) ** 2 + var)


def expected_reward(chain: LinearGaussianChain, policy: AffineChain) -> float:
    """``E[r(x_K)] = -s ((m_K - c)^2 + v_K)``."""
    means, variances = marginals(chain, policy)
    return float(_mean_reward(chain, means[-1], variances[-1]))


def reference_tilt(chain: LinearGaussianChain, beta: float) -> tuple[float, float]:
    """The mean and variance of ``p_ref(x) exp(r(x) / beta)``, ``p_ref`` the reference's final
    marginal: the objective's stated optimum."""
    means, variances = marginals(chain, chain.reference)
    precision = 1 / variances[-1] + 2 * chain.scale / beta
    mean = (means[-1] / variances[-1] + 2 * chain.scale * chain.center / beta) / precision
    return float(mean), float(1 / precision)


def gaussian_kl(mean: float, var: float, target_mean: float, target_var: float) -> float:
    """``KL(N(mean, var) || N(target_mean, target_var))`` in nats."""
    return 0.5 * (var / target_var + (mean - target_mean) ** 2 / target_var - 1 + math.log(target_var / var))


def final_kl_to(chain: LinearGaussianChain, policy: AffineChain, target: tuple[float, float]) -> float:
    """The KL of ``policy``'s final marginal to a Gaussian ``target`` (mean, variance), per coordinate."""
    means, variances = marginals(chain, policy)
    return gaussian_kl(float(means[-1]), float(variances[-1]), *target)


def data_tilt(chain: LinearGaussianChain, temperature: float) -> tuple[float, float]:
    """The mean and variance of ``p_data(x) exp(r(x) / T)``: DDRL's stated optimum."""
    mean, var = chain.source
    precision = 1 / var + 2 * chain.scale / temperature
    return (mean / var + 2 * chain.scale * chain.center / temperature) / precision, 1 / precision


def data_log_normalizer(chain: LinearGaussianChain, temperature: float) -> float:
    """``Z = T log E_data exp(r / T)`` (``exp_tilt_normalizer = "data"``), for ``N(m, v I)`` data
    and the reward summed over ``chain.dims`` coordinates."""
    mean, var = chain.source
    u = chain.scale / temperature
    per_coordinate = -0.5 * math.log(1 + 2 * u * var) - u * (mean - chain.center) ** 2 / (1 + 2 * u * var)
    return temperature * chain.dims * per_coordinate


def _terminal(chain: LinearGaussianChain, mean: Tensor, var: Tensor, temperature: float | None,
              log_normalizer: float) -> Tensor:
    """``E[f(x_K)]`` for ``x_K ~ N(mean, var I)`` in ``D = chain.dims`` coordinates: ``f = r``
    (``D`` times one coordinate's), or with a temperature the exp-tilt ``-exp(-(r - Z) / T) =
    -exp(Z / T) prod_d exp(u (x_d - c)^2)``, ``u = s / T`` (finite while ``2 u var < 1``)."""
    if temperature is None:
        return chain.dims * _mean_reward(chain, mean, var)
    u = chain.scale / temperature
    room = 1 - 2 * u * var
    if room <= 0:
        return torch.tensor(-1e30, dtype=torch.float64)
    one = room ** -0.5 * torch.exp(u * (mean - chain.center) ** 2 / room)
    return -math.exp(log_normalizer / temperature) * one ** chain.dims


def data_objective(chain: LinearGaussianChain, p: Tensor, q: Tensor, beta: float, trained: list[int],
                   temperature: float | None = None, log_normalizer: float = 0.0) -> Tensor:
    """``J`` of the data arms (module docstring) at step means ``p x + q`` (every coordinate's)."""
    policy = AffineChain(p=p, q=q)
    means, variances = marginals(chain, policy)
    kl = step_kls(chain, policy, chain.data_means, chain.data_vars)
    return _terminal(chain, means[-1], variances[-1], temperature, log_normalizer) - chain.dims * beta * kl[trained].sum()


def data_fixed_point(chain: LinearGaussianChain, beta: float, temperature: float | None = None,
                     log_normalizer: float = 0.0, trained: tuple[int, ...] | None = None,
                     tolerance: float = 1e-7) -> AffineChain:
    """The fixed point of a data arm: ``argmax J`` over the trained steps' ``(p_k, q_k)``, by
    damped Newton steps (Levenberg-Marquardt on the exact Hessian) from the reference, until
    every gradient entry is below ``tolerance``. Untrained steps keep the reference's mean."""
    steps = list(range(chain.steps) if trained is None else trained)

    def objective(values: Tensor) -> Tensor:
        p, q = chain.a.clone(), chain.b.clone()
        p[steps], q[steps] = values[: len(steps)], values[len(steps):]
        return data_objective(chain, p, q, beta, steps, temperature, log_normalizer)

    values, damping = torch.cat([chain.a[steps], chain.b[steps]]), 1e-3
    for _ in range(500):
        gradient = torch.func.grad(objective)(values)
        if float(gradient.abs().max()) < tolerance:
            break
        hessian = torch.func.hessian(objective)(values)
        eye = torch.eye(len(values), dtype=torch.float64)
        step = torch.linalg.solve(-hessian + damping * hessian.abs().max() * eye, gradient)
        if objective(values + step) > objective(values):
            values, damping = values + step, max(damping / 10, 1e-12)
        elif damping < 1e6:
            damping *= 10
        else:  # no step improves J any more: float64's floor
            raise ArithmeticError(f"data_fixed_point: stalled at gradient {float(gradient.abs().max()):.3g}")
    else:
        raise ArithmeticError(f"data_fixed_point: no convergence (gradient {float(gradient.abs().max()):.3g})")
    p, q = chain.a.clone(), chain.b.clone()
    p[steps], q[steps] = values[: len(steps)], values[len(steps):]
    return AffineChain(p=p, q=q)


def ddim_twin(policy, sampler, source_mean: float, source_var: float, **reward) -> LinearGaussianChain:
    """The reference chain of ``ddim-sde`` (``sampler``, its coefficients for ``policy``'s forward
    process) on the exact denoiser of ``N(source_mean, source_var I)`` data."""
    c = sampler.coefficients(policy)
    return LinearGaussianChain.ddim(a_t=c.a_t, sqrt_a_prev=c.sqrt_a_prev, direction=c.direction, std=c.std,
                                    source_mean=source_mean, source_var=source_var, **reward)


@torch.no_grad()
def read_affine_chains(policy, sampler, cond=None) -> list[AffineChain]:
    """A policy's step means read off its transitions at ``x = 0`` and ``x = 1``, one
    :class:`AffineChain` per coordinate (exact when every step mean is affine and diagonal, as
    the affine ``mlp-denoiser``'s are)."""
    dims = policy.sample_shape[0]
    at = [torch.stack([sampler.transition(policy, torch.full((1, dims), x), k, cond).mean[0]
                       for k in range(sampler.num_steps)]).double() for x in (0.0, 1.0)]
    return [AffineChain(p=at[1][:, d] - at[0][:, d], q=at[0][:, d]) for d in range(dims)]
