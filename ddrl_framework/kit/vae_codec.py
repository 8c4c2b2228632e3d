"""How a backbone's VAE maps pixels in [-1, 1] to the normalized latents its denoiser works on, and
back. Two conventions cover the diffusers pipelines:

* :data:`SCALED`: ``(z - shift_factor) * scaling_factor`` (SD 1.x/2.x without a shift, SD3, FLUX);
* :data:`STANDARDIZED`: ``(z - latents_mean) / latents_std`` per channel (Wan, Qwen-Image).

Encoding takes the posterior's mean (deterministic). A policy names its codec
(``DiffusersPolicy.vae_codec``) instead of writing the arithmetic out.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
from torch import Tensor


@attrs.frozen
class ScaledCodec:
    """``latents = (z - shift_factor) * scaling_factor`` (a missing shift is 0)."""

    def _factors(self, vae: Any) -> tuple[float, float]:
        return float(vae.config.get("shift_factor") or 0.0), float(vae.config.scaling_factor)

    def encode(self, vae: Any, pixels: Tensor) -> Tensor:
        shift, scale = self._factors(vae)
        z = vae.encode(pixels.to(vae.dtype)).latent_dist.mean
        return (z - shift) * scale

    def decode(self, vae: Any, latents: Tensor) -> Tensor:
        shift, scale = self._factors(vae)
        return vae.decode(latents.to(vae.dtype) / scale + shift, return_dict=False)[0]


@attrs.frozen
class StandardizedCodec:
    """``latents = (z - latents_mean) / latents_std``, per latent channel (dim 1)."""

    def _stats(self, vae: Any, like: Tensor) -> tuple[Tensor, Tensor]:
        view = (1, -1) + (1,) * (like.ndim - 2)
        mean = torch.tensor(vae.config.latents_mean, device=like.device).view(view)
        std = torch.tensor(vae.config.latents_std, device=like.device).view(view)
        return mean, std

    def encode(self, vae: Any, pixels: Tensor) -> Tensor:
        z = vae.encode(pixels.to(vae.dtype)).latent_dist.mean.float()
        mean, std = self._stats(vae, z)
        return (z - mean) / std

    def decode(self, vae: Any, latents: Tensor) -> Tensor:
        mean, std = self._stats(vae, latents)
        return vae.decode((latents.float() * std + mean).to(vae.dtype), return_dict=False)[0]


SCALED = ScaledCodec()
STANDARDIZED = StandardizedCodec()
