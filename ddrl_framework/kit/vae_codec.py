"""How a backbone's VAE maps pixels in [-1, 1] to the normalized latents its denoiser works on, and
back. Three conventions cover the diffusers pipelines:

* :data:`SCALED`: ``(z - shift_factor) * scaling_factor`` (SD 1.x/2.x without a shift, SD3, FLUX);
* :data:`STANDARDIZED`: ``(z - latents_mean) / latents_std`` per channel (Wan, Qwen-Image);
* :data:`PATCHED_BATCH_NORM`: 2x2 patches as channels, standardized by the VAE's batch-norm
  running statistics (FLUX.2).

Encoding takes the posterior's mean (deterministic). A policy names its codec
(``DiffusersPolicy.vae_codec``) instead of writing the arithmetic out.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
from torch import Tensor

from ddrl_framework.kit.latent_tokens import patchify_2x2, unpatchify_2x2


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


@attrs.frozen
class PatchedBatchNormCodec:
    """``latents = (patchify_2x2(z) - running_mean) / sqrt(running_var + batch_norm_eps)``: the VAE's
    latent ``[C, H, W]`` as ``[4C, H/2, W/2]``, standardized by the statistics of the VAE's own
    batch norm ``vae.bn`` (FLUX.2's ``AutoencoderKLFlux2``; its pipelines' ``_encode_vae_image``).
    ``normalize`` / ``denormalize`` are the map between the VAE's latents and these, without the VAE."""

    def _stats(self, vae: Any, like: Tensor) -> tuple[Tensor, Tensor]:
        mean = vae.bn.running_mean.view(1, -1, 1, 1).to(like.device, like.dtype)
        variance = vae.bn.running_var.view(1, -1, 1, 1) + vae.config.batch_norm_eps
        return mean, variance.sqrt().to(like.device, like.dtype)

    def normalize(self, vae: Any, z: Tensor) -> Tensor:
        patches = patchify_2x2(z)
        mean, std = self._stats(vae, patches)
        return (patches - mean) / std

    def denormalize(self, vae: Any, latents: Tensor) -> Tensor:
        mean, std = self._stats(vae, latents)
        return unpatchify_2x2(latents * std + mean)

    def encode(self, vae: Any, pixels: Tensor) -> Tensor:
        return self.normalize(vae, vae.encode(pixels.to(vae.dtype)).latent_dist.mean)

    def decode(self, vae: Any, latents: Tensor) -> Tensor:
        return vae.decode(self.denormalize(vae, latents.to(vae.dtype)), return_dict=False)[0]


SCALED = ScaledCodec()
STANDARDIZED = StandardizedCodec()
PATCHED_BATCH_NORM = PatchedBatchNormCodec()
