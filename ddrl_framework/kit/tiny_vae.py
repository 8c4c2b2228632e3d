"""Tiny random VAEs for the tiny configurations of the diffusers backbones (CPU-sized, for tests and
the ``*-tiny.toml`` configs): real diffusers classes with the real latent conventions, random weights."""

from __future__ import annotations

from typing import Any

import torch
from diffusers import AutoencoderKL

from ddrl_framework.kit.seeding import seeded


def autoencoder_kl(seed: int, latent_channels: int = 4, sample_size: int = 32, scaling_factor: float = 0.18215,
                   shift_factor: float | None = None, quant_conv: bool = False) -> AutoencoderKL:
    """An ``AutoencoderKL`` with two blocks: pixels to latents at 1/2 the side, ``latent_channels`` deep
    (SD: 4 channels, no shift, with quant convs; SD3: 4 here, 1.5035 / 0.0609; FLUX: 0.3611 / 0.1159)."""
    def build():
        return AutoencoderKL(
            in_channels=3, out_channels=3, latent_channels=latent_channels, block_out_channels=(8, 8),
            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
            layers_per_block=1, norm_num_groups=4, sample_size=sample_size, use_quant_conv=quant_conv,
            use_post_quant_conv=quant_conv, scaling_factor=scaling_factor, shift_factor=shift_factor)

    return seeded(seed, build)


def autoencoder_kl_flux2(seed: int, latent_channels: int = 4, sample_size: int = 32) -> Any:
    """FLUX.2's ``AutoencoderKLFlux2`` with two blocks (latents at 1/2 the side, ``latent_channels``
    deep) and random batch-norm running statistics, so the latent normalization is not the identity.
    (Imported here: diffusers has it only since FLUX.2, and the other backbones need no such diffusers.)"""
    from diffusers import AutoencoderKLFlux2

    def build():
        vae = AutoencoderKLFlux2(
            in_channels=3, out_channels=3, latent_channels=latent_channels, block_out_channels=(8, 8),
            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
            layers_per_block=1, norm_num_groups=4, sample_size=sample_size)
        vae.bn.running_mean.copy_(0.1 * torch.randn_like(vae.bn.running_mean))
        vae.bn.running_var.copy_(0.5 + torch.rand_like(vae.bn.running_var))
        return vae.eval()

    return seeded(seed, build)
