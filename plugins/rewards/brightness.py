"""Reward ``brightness``: mean pixel intensity. Deliberately hackable: its optimum is a white canvas."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
from torch import Tensor

from ddrl_framework.hookspecs import hookimpl


@hookimpl
def register_reward_models(register):
    register("brightness", Brightness)


@attrs.frozen(kw_only=True)
class Brightness:
    def __call__(self, samples: Tensor, prompts: Sequence[str], metadata: Mapping[str, Any]) -> Tensor:
        """``samples`` in [0, 1], images or videos -> ``[B]`` mean intensity in [0, 1]."""
        return samples.float().flatten(1).mean(dim=1)
