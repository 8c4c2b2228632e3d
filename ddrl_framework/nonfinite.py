"""Non-finite values in training: detected where they arise, so that the trainer can name them."""

from __future__ import annotations

import torch
from torch import Tensor


class NonFinite(Exception):
    """A NaN or inf in ``source`` (e.g. "reward 'brightness'", "loss_policy at sampler step 3")."""

    def __init__(self, source: str):
        super().__init__(source)
        self.source = source


def require_finite(value: Tensor, source: str) -> None:
    if not bool(torch.isfinite(value).all()):
        raise NonFinite(source)
