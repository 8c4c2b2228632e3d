"""Reward ``quadratic``: ``r(x) = -scale ||x - center||^2`` on points ``[B, d]`` (any ``[B, ...]`` is
flattened), the reward of the exactly solvable benchmark. Its maximum, 0, is at ``center``; the
exponential tilt of a Gaussian mixture by it is again a Gaussian mixture
(``ddrl_plugins.shared.solvable``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
from torch import Tensor

from ddrl_framework.hookspecs import hookimpl
from ddrl_plugins.shared.solvable import quadratic_reward


@hookimpl
def register_reward_models(register):
    register("quadratic", Quadratic)


@attrs.frozen(kw_only=True)
class Quadratic:
    center: tuple[float, ...] = (0.5, 0.5)  # c: where the reward is maximal (0)
    scale: float = attrs.field(default=1.0, validator=attrs.validators.gt(0.0))  # a

    def __call__(self, samples: Tensor, prompts: Sequence[str], metadata: Mapping[str, Any]) -> Tensor:
        if samples[0].numel() != len(self.center):
            raise ValueError(f"quadratic: samples of {samples[0].numel()} values, a center of "
                             f"{len(self.center)}; give the center one coordinate per dimension")
        return quadratic_reward(samples.float(), self.center, self.scale)
