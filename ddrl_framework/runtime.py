"""Small run-time helpers: devices, cache folders, seeding."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

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


def cache_root() -> Path:
    """``$DDRL_CACHE_DIR``, else ``$XDG_CACHE_HOME/ddrl-framework``, else ``~/.cache/ddrl-framework``."""
    if os.environ.get("DDRL_CACHE_DIR"):
        return Path(os.environ["DDRL_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ddrl-framework"


def config_hash(data: Any) -> str:
    """A short stable hash of JSON-able config data."""
    text = json.dumps(data, sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def make_generator(device: torch.device, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)
