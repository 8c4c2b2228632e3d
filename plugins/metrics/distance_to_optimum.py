"""Metric ``distance-to-optimum``: the energy distance (``evaluation.energy``) from the evaluation
samples to a regularizer's optimum (docs/concepts.md, "What each estimator converges to"), and the noise floor of that distance.

Targets (``target``), each a weighted sample, with ``r`` the experiment's weighted reward:

* ``data``: ``p_data``, the held-out data;
* ``tilt``: ``p_data exp(r / beta)``, the held-out data weighted by ``exp(r / beta)``: DDRL's
  optimum in the paper's form, and reverse KL's if the reference were the data;
* ``reference-tilt``: ``p_ref exp(r / beta)``, reverse KL's own optimum, ``p_ref`` the frozen
  reference: ``reference_samples`` of the reference's own outputs (rolled out once, from
  ``seed``, with the evaluation's sampler) weighted by ``exp(r / beta)``;
* ``forward-kl``: ``beta p_data / (lambda - r)``, plain forward KL's optimum, lambda by bisection
  (``evaluation.optima.forward_kl``).

Each target's base sample is split in two independent pools: one is the target the samples are
compared with, the other gives the floor: the distance of ``floor_repeats`` exact draws of the
target (rejection sampling from that pool, ``evaluation.optima.exact_draws``) at the evaluation's
sample size, averaged. A policy that reached the target exactly scores the floor in expectation.
Reported: ``<key>`` (the distance), ``<key>_floor``, ``<key>_reward`` (the target's mean reward), and
for ``reference-tilt`` also ``<key>_reference_to_data`` (the reference pool's distance to the
held-out data: how good the pretrained model is). Betas are in the objective's units, with raw
advantages (``train.advantage_normalization = "raw"``).
"""

from __future__ import annotations

import hashlib
from typing import Literal

import attrs
import torch
from torch import Tensor

from ddrl_framework.contexts import EvalContext
from ddrl_framework.evaluation.energy import energy_distance, mean_distance
from ddrl_framework.evaluation.evaluator import repeat_to
from ddrl_framework.evaluation.optima import exact_draws, exp_tilt, forward_kl
from ddrl_framework.hookspecs import hookimpl
from ddrl_framework.kit.seeding import make_generator

TargetName = Literal["data", "tilt", "reference-tilt", "forward-kl"]


@hookimpl
def register_metrics(register):
    register("distance-to-optimum", DistanceToOptimum)


def _fingerprint(*tensors: Tensor) -> str:
    digest = hashlib.sha1()
    for tensor in tensors:
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@attrs.frozen(kw_only=True)
class _Pool:
    """A weighted sample: ``points`` ``[M, D]`` (float64), probabilities ``weights`` ``[M]``."""

    points: Tensor
    weights: Tensor


@attrs.frozen(kw_only=True)
class DistanceToOptimum:
    target: TargetName = "data"
    beta: float = attrs.field(default=1.0, validator=attrs.validators.gt(0.0))  # the arm's beta
    key: str = ""  # reported under <key>, <key>_floor, ...; "": dist_<target>, e.g. dist_reference_tilt
    reference_samples: int = attrs.field(default=10_000, validator=attrs.validators.ge(2))  # per pool
    floor_repeats: int = attrs.field(default=3, validator=attrs.validators.ge(1))
    seed: int = 0  # the reference rollouts and the floor's draws
    _cache: dict = attrs.field(init=False, factory=dict, repr=False, eq=False)

    @property
    def needs_reference(self) -> bool:
        return self.target == "reference-tilt"

    @property
    def name(self) -> str:
        return self.key or "dist_" + self.target.replace("-", "_")

    @torch.no_grad()
    def __call__(self, context: EvalContext) -> dict[str, float]:
        base_a, base_b = self._base_pools(context)
        target, floor_pool = self._reweight(context, base_a), self._reweight(context, base_b)
        samples = context.samples.flatten(1).double()
        self_term = self._cached(("self", _fingerprint(target.points, target.weights)),
                                 lambda: mean_distance(target.points, target.weights, target.points, target.weights))
        values = {
            self.name: energy_distance(samples, target.points, None, target.weights, y_self=self_term),
            f"{self.name}_floor": self._floor(target, floor_pool, self_term, len(samples)),
            f"{self.name}_reward": float(target.weights @ self._rewards(context, target.points)),
        }
        if self.target == "reference-tilt":
            values[f"{self.name}_reference_to_data"] = self._reference_to_data(context, base_a)
        return values

    # --- the target ---------------------------------------------------------------------
    def _base_pools(self, context: EvalContext) -> tuple[Tensor, Tensor]:
        """Two independent base samples ``[M, D]``: the held-out data's two halves, or two pools
        of the reference's outputs."""
        if self.target != "reference-tilt":
            data = context.held_out.x0.flatten(1).double()
            return data[0::2], data[1::2]
        if context.reference is None:
            raise ValueError("distance-to-optimum: target 'reference-tilt' needs the reference policy, "
                             "but the evaluation context has none")
        key = ("reference", id(context.reference))
        _, points = self._cached(key, lambda: (context.reference, self._reference_outputs(context)))
        return points[0::2], points[1::2]

    def _reference_outputs(self, context: EvalContext) -> Tensor:
        """``2 x reference_samples`` outputs of the frozen reference ``[2M, D]``, from fixed noise."""
        reference, count = context.reference, 2 * self.reference_samples
        device = context.samples.device
        generator = make_generator(device, self.seed)
        conditions = repeat_to(context.held_out, count).to(device)
        noise = torch.randn((count, *reference.sample_shape), generator=generator, device=device)
        trajectory = context.sampler.rollout(reference, reference.encode_conditions(conditions), noise, generator)
        return reference.decode(trajectory.final).flatten(1).double()

    def _rewards(self, context: EvalContext, points: Tensor) -> Tensor:
        prompts = repeat_to(context.held_out, len(points)).prompts
        return context.score(points.to(context.samples.dtype), prompts).double()

    def _reweight(self, context: EvalContext, points: Tensor) -> _Pool:
        """The target as a weighted sample of the base ``points``."""
        if self.target == "data":
            return _Pool(points=points, weights=torch.full((len(points),), 1 / len(points), dtype=torch.float64,
                                                           device=points.device))
        rewards = self._rewards(context, points)
        tilt = forward_kl if self.target == "forward-kl" else exp_tilt
        return _Pool(points=points, weights=tilt(rewards, self.beta))

    # --- the floor and the reference's own distance -------------------------------------
    def _floor(self, target: _Pool, pool: _Pool, self_term: float, count: int) -> float:
        """The mean distance to ``target`` of ``floor_repeats`` exact draws of ``count`` points
        from the other ``pool``."""
        key = ("floor", _fingerprint(target.points, target.weights, pool.points, pool.weights), count)

        def measure() -> float:
            distances = []
            for repeat in range(self.floor_repeats):
                generator = torch.Generator().manual_seed(self.seed * 1_000 + repeat)
                draws = exact_draws(pool.points, pool.weights, count, generator)
                if len(draws) < count:
                    raise ValueError(
                        f"distance-to-optimum ({self.name}): only {len(draws)} of {len(pool.points)} pool "
                        f"points are accepted as exact draws of the target, fewer than the {count} "
                        "evaluation samples; raise the data source's held-out size (or reference_samples), "
                        "or lower train.eval_samples")
                distances.append(energy_distance(draws, target.points, None, target.weights, y_self=self_term))
            return sum(distances) / len(distances)

        return self._cached(key, measure)

    def _reference_to_data(self, context: EvalContext, reference_points: Tensor) -> float:
        """The energy distance of one reference pool to one half of the held-out data."""
        data = context.held_out.x0.flatten(1).double()[0::2]
        key = ("reference_to_data", _fingerprint(reference_points, data))
        return self._cached(key, lambda: energy_distance(reference_points, data))

    def _cached(self, key, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]
