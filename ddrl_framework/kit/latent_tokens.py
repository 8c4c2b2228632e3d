"""Latents as the token sequences that FLUX-style transformers take: 2x2 patches packed into
channels, and the position ids their rotary embeddings read.

``patchify_2x2`` maps ``[B, C, H, W]`` to ``[B, 4C, H/2, W/2]``, each patch's channels ordered
(channel, patch row, patch column); ``grid_to_tokens`` flattens a grid row-major into
``[B, rows * columns, channels]``. ``pack_2x2`` is the two together, ``[B, (H/2)(W/2), 4C]``: the
layout of FluxPipeline's ``latents``; FLUX.2 patchifies in the VAE's latent space and packs the
patchified grid (all permutations, so i.i.d. noise stays i.i.d.). Each has its inverse.
"""

from __future__ import annotations

import torch
from torch import Tensor


def patchify_2x2(latents: Tensor) -> Tensor:
    """``[B, C, H, W]`` to ``[B, 4C, H/2, W/2]`` (FLUX.2's ``_patchify_latents``)."""
    b, c, h, w = latents.shape
    patches = latents.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return patches.reshape(b, c * 4, h // 2, w // 2)


def unpatchify_2x2(patches: Tensor) -> Tensor:
    """``[B, 4C, H/2, W/2]`` back to ``[B, C, H, W]``."""
    b, c4, h, w = patches.shape
    latents = patches.reshape(b, c4 // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
    return latents.reshape(b, c4 // 4, h * 2, w * 2)


def grid_to_tokens(grid: Tensor) -> Tensor:
    """``[B, C, rows, columns]`` to ``[B, rows * columns, C]``, row-major."""
    b, c, rows, columns = grid.shape
    return grid.reshape(b, c, rows * columns).permute(0, 2, 1)


def tokens_to_grid(tokens: Tensor, rows: int, columns: int) -> Tensor:
    """``[B, rows * columns, C]`` back to ``[B, C, rows, columns]``."""
    b, _, c = tokens.shape
    return tokens.permute(0, 2, 1).reshape(b, c, rows, columns)


def pack_2x2(latents: Tensor) -> Tensor:
    """``[B, C, H, W]`` to ``[B, (H/2)(W/2), 4C]``: FluxPipeline's packed latents, the values of
    ``grid_to_tokens(patchify_2x2(latents))`` in one contiguous permutation (the memory layout the
    FLUX.1 and Qwen-Image fidelity numbers were measured with)."""
    b, c, h, w = latents.shape
    patches = latents.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return patches.reshape(b, (h // 2) * (w // 2), c * 4)


def unpack_2x2(tokens: Tensor, height: int, width: int) -> Tensor:
    """``[B, (H/2)(W/2), 4C]`` back to ``[B, C, H, W]`` (``height``, ``width``: the latent's)."""
    b, _, packed = tokens.shape
    patches = tokens.reshape(b, height // 2, width // 2, packed // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return patches.reshape(b, packed // 4, height, width)


def image_position_ids(rows: int, columns: int, like: Tensor, axes: int = 3) -> Tensor:
    """``[rows * columns, axes]``: (0, row, column) per token, row-major; FLUX.2's fourth axis
    (``axes=4``, the layer) is 0."""
    grid = torch.zeros(rows, columns, axes, device=like.device, dtype=like.dtype)
    grid[..., 1] = torch.arange(rows, device=like.device, dtype=like.dtype)[:, None]
    grid[..., 2] = torch.arange(columns, device=like.device, dtype=like.dtype)[None, :]
    return grid.reshape(rows * columns, axes)


def text_position_ids(tokens: int, like: Tensor, axes: int = 3) -> Tensor:
    """``[tokens, axes]``: FLUX.1's (3 axes) are zeros, text tokens sharing one position; FLUX.2's
    (4 axes) number the tokens on the last axis, (0, 0, 0, index)."""
    ids = torch.zeros(tokens, axes, device=like.device, dtype=like.dtype)
    if axes == 4:
        ids[:, 3] = torch.arange(tokens, device=like.device, dtype=like.dtype)
    return ids


class PackedLatents:
    """Mixed into a ``DiffusersPolicy`` (before it) whose denoiser and pipeline take 2x2-packed
    tokens (FLUX, Qwen-Image): samples stay ``[B, C, H, W]``; the denoiser's output is unpacked,
    and the pipeline's ``latents`` are packed."""

    sample_shape: tuple[int, ...]

    def read_output(self, output: Tensor, x_t: Tensor) -> Tensor:
        return unpack_2x2(output, *x_t.shape[-2:])

    def to_pipeline_latents(self, x: Tensor) -> Tensor:
        return pack_2x2(x)

    def from_pipeline_latents(self, latents: Tensor) -> Tensor:
        return unpack_2x2(latents, *self.sample_shape[-2:])
