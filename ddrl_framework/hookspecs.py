"""pluggy hook specifications. Each hook receives a ``register(name, factory)`` callback.

``factory(**options)`` builds the component from the options of its config section (every key
but ``name``). Options are checked against the factory's signature and type hints before the call,
so a wrong key or type is reported with its path in the config file.
"""

from collections.abc import Callable
from typing import Any

import pluggy

PROJECT = "ddrl_framework"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Register = Callable[[str, Callable[..., Any]], None]


@hookspec
def register_policies(register: Register) -> None:
    """Register Policy factories: ``register("unet2d", build_unet2d_policy)``."""


@hookspec
def register_samplers(register: Register) -> None:
    """Register Sampler factories: ``register("ddim-sde", DdimSdeSampler)``."""


@hookspec
def register_reward_models(register: Register) -> None:
    """Register RewardModel factories: ``register("brightness", Brightness)``."""


@hookspec
def register_regularizers(register: Register) -> None:
    """Register Regularizer factories: ``register("forward-kl-data", ForwardKLData)``."""


@hookspec
def register_data_sources(register: Register) -> None:
    """Register DataSource factories: ``register("sklearn-digits", SklearnDigits)``."""


@hookspec
def register_metrics(register: Register) -> None:
    """Register evaluation Metric factories: ``register("frechet-distance", FrechetDistance)``."""
