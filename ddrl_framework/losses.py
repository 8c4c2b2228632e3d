"""The backbone-independent pre-training loss that every built-in policy uses."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor


def simple_diffusion_loss(policy: Any, x0: Tensor, cond: Any, *, noise: Tensor | None = None,
                          t: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
    """Mean squared error between ``policy.predict`` at ``x_t`` and ``policy.training_target``.

    ``noise`` defaults to fresh Gaussian noise and ``t`` to the schedule's pre-training timestep
    distribution (uniform for DDPM, the shifted training sigmas for flow matching).
    """
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    if t is None:
        t = policy.schedule.random_timesteps(x0.shape[0], generator, x0.device)
    t = t.to(x0.device).expand(x0.shape[0])
    prediction = policy.predict(policy.add_noise(x0, noise, t), t, cond)
    return F.mse_loss(prediction.float(), policy.training_target(x0, noise, t).float())
