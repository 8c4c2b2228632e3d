"""pluggy hook specifications. Each hook receives a ``register(name, factory)`` callback.

``factory(**options)`` builds the component from the options of its config section (every key
but ``name``). Options are checked against the factory's signature, type hints and attrs
validators before anything is built, so a wrong key, type or value is reported with its path in
the config file.

``factory`` is a callable, or a ``"module:attribute"`` string: the module is imported only when
the component is built or its options are checked, so a plugin whose implementation imports a
heavy library (diffusers, transformers, open_clip) costs nothing to commands that do not use it.

``forward_process`` (policies and samplers): the kind of forward process the component works
with, e.g. ``"ddpm"`` or ``"flow-matching"`` (``DdpmProcess.kind``, ``FlowMatchingProcess.kind``):
the one a policy's ``forward_process`` is, the one a sampler samples. When a policy and a sampler
both declare one and they differ, the experiment is refused before anything is built.
"""

from collections.abc import Callable
from typing import Any, Protocol

import pluggy

PROJECT = "ddrl_framework"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class Register(Protocol):
    """The callback every hook receives."""

    def __call__(self, name: str, factory: Callable[..., Any] | str, *,
                 forward_process: str | None = None) -> None: ...


@hookspec
def register_policies(register: Register) -> None:
    """Register Policy factories: ``register("unet2d", build_unet2d_policy, forward_process="ddpm")``."""


@hookspec
def register_samplers(register: Register) -> None:
    """Register Sampler factories: ``register("ddim-sde", DdimSdeSampler, forward_process="ddpm")``."""


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
