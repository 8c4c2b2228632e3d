"""The trainable-weight methods of a policy whose weights are one ``nn.Module``, all trained.

A policy class mixes in :class:`ModuleWeights`, returns its module from ``_weights()`` and sets
``_reference_names`` (None on the policy; on its frozen reference view, the policy's trainable
names, so that the reference lists the same names with the frozen copy's values).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from torch import Tensor, nn


class ModuleWeights:
    _reference_names: tuple[str, ...] | None

    def _weights(self) -> nn.Module:
        raise NotImplementedError

    def trainable_parameters(self) -> Iterable[nn.Parameter]:
        return [p for p in self._weights().parameters() if p.requires_grad]

    def named_trainable_parameters(self) -> list[tuple[str, Tensor]]:
        """By name; on the reference, the policy's names with the frozen copy's values."""
        if self._reference_names is not None:
            values = dict(self._weights().named_parameters())
            return [(name, values[name]) for name in self._reference_names]
        return [(name, p) for name, p in self._weights().named_parameters() if p.requires_grad]

    def trainable_state_dict(self) -> dict[str, Tensor]:
        return {k: v.detach().clone() for k, v in self._weights().state_dict().items()}

    def load_trainable_state_dict(self, state: Mapping[str, Tensor]) -> None:
        self._weights().load_state_dict(dict(state))
