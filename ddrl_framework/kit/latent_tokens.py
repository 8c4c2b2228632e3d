"""Latents as the token sequences that FLUX-style transformers take: 2x2 patches packed into
channels, and the (frame, row, column) position ids their rotary embeddings read.

``pack_2x2`` maps ``[B, C, H, W]`` to ``[B, (H/2)(W/2), 4C]``, tokens in row-major patch order,
each token's channels ordered (channel, patch row, patch column); ``unpack_2x2`` is its inverse.
This is the layout of FluxPipeline's ``latents`` (a permutation, so i.i.d. noise stays i.i.d.).
"""

from __future__ import annotations

import torch
from torch import Tensor


def pack_2x2(latents: Tensor) -> Tensor:
    b, c, h, w = latents.shape
    patches = latents.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return patches.reshape(b, (h // 2) * (w // 2), c * 4)


def unpack_2x2(tokens: Tensor, height: int, width: int) -> Tensor:
    """``[B, (H/2)(W/2), 4C]`` back to ``[B, C, H, W]`` (``height``, ``width``: the latent's)."""
    b, _, packed = tokens.shape
    patches = tokens.reshape(b, height // 2, width // 2, packed // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return patches.reshape(b, packed // 4, height, width)


def image_position_ids(rows: int, columns: int, like: Tensor) -> Tensor:
    """``[rows * columns, 3]``: (0, row, column) per packed token, row-major."""
    grid = torch.zeros(rows, columns, 3, device=like.device, dtype=like.dtype)
    grid[..., 1] = torch.arange(rows, device=like.device, dtype=like.dtype)[:, None]
    grid[..., 2] = torch.arange(columns, device=like.device, dtype=like.dtype)[None, :]
    return grid.reshape(rows * columns, 3)


def text_position_ids(tokens: int, like: Tensor) -> Tensor:
    """``[tokens, 3]`` zeros: text tokens share one position."""
    return torch.zeros(tokens, 3, device=like.device, dtype=like.dtype)


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
