"""The device a run uses: `train.device`, with a clear error for one that is not there."""

from __future__ import annotations

import torch

from ddrl_framework.errors import UserError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"train.device: '{name}' is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"train.device = '{name}' but CUDA is not available here; use auto or cpu")
    return device


