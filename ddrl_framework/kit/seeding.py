"""Randomness passed in, never hidden: generators from seeds, and building under a seed."""

from __future__ import annotations

import torch


def make_generator(device: torch.device, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def seeded(seed: int, build):
    """``build()`` with the global RNG seeded, leaving the caller's RNG state untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()
